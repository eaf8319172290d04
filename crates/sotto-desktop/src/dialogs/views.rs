//! The dialogs that show a result: a user's devices, a safety number,
//! the files waiting for an answer, the groups and invitations.

use eframe::egui::{self, RichText};
use sotto_client::command::{Command, Verify};
use sotto_client::{DeviceInfo, Offer, Verification};
use sotto_proto::{DeviceId, GroupInfo, GroupName, Invitation, Username};

use super::Asked;

pub(super) fn devices(
    ui: &mut egui::Ui,
    user: &Option<Username>,
    list: Option<&[DeviceInfo]>,
    removing: &mut Option<DeviceId>,
) -> Option<Asked> {
    let mut asked = None;
    if let Some(device) = removing.clone() {
        ui.label(format!(
            "Remove device {device}? It is signed out and gets no more messages; logging in \
             there again makes a new device."
        ));
        ui.horizontal(|ui| {
            if ui.button("Yes, remove it").clicked() {
                asked = Some(Asked::Run(Command::RemoveDevice(device)));
            }
            if ui.button("No").clicked() {
                *removing = None;
            }
        });
        return asked;
    }
    match list {
        None => {
            ui.label("Reading the device list…");
        }
        Some(list) => {
            egui::Grid::new("devices").striped(true).show(ui, |ui| {
                for device in list {
                    ui.label(RichText::new(&device.fingerprint).monospace())
                        .on_hover_text(format!("device {}", device.device));
                    let state = if device.this_device {
                        "this device"
                    } else if device.verified {
                        "verified"
                    } else if device.gets_keys {
                        "can read your messages"
                    } else {
                        "not accepted: reads nothing of yours"
                    };
                    ui.label(state);
                    if !device.this_device {
                        if user.is_none() && ui.small_button("Remove…").clicked() {
                            *removing = Some(device.device.clone());
                        }
                        if !device.gets_keys && ui.small_button("Accept").clicked() {
                            asked = Some(Asked::Run(Command::TrustDevice {
                                user: user.clone(),
                                device: device.device.clone(),
                            }));
                        }
                    }
                    ui.end_row();
                }
            });
            ui.label(
                RichText::new(if user.is_some() {
                    "Compare a device's fingerprint with the one its screen shows (Account \
                     → Your devices there) before you accept it."
                } else {
                    "Compare a device's fingerprint with the one its screen shows before you \
                     accept it. Removing one of your devices signs it out."
                })
                .weak(),
            );
        }
    }
    if ui.button("Close").clicked() {
        asked = Some(Asked::Close);
    }
    asked
}

pub(super) fn verify(
    ui: &mut egui::Ui,
    user: &Username,
    verification: Option<&Verification>,
) -> Option<Asked> {
    let Some(verification) = verification else {
        ui.label("Working out the safety number…");
        return ui.button("Close").clicked().then_some(Asked::Close);
    };
    ui.label(format!(
        "Put your screens side by side with {user}, or read the number aloud on a call: \
         their Sotto shows the same number for you two. If it is the same, nobody sits \
         between your devices."
    ));
    ui.add_space(6.0);
    let groups: Vec<&str> = verification.safety_number.split_whitespace().collect();
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.label(RichText::new(format!("Safety number for you and {user}")).weak());
        for row in groups.chunks(4) {
            ui.label(RichText::new(row.join("  ")).monospace().size(18.0));
        }
    });
    ui.add_space(6.0);
    let mut asked = None;
    if verification.verified {
        ui.label(RichText::new(format!("✔ {user} is verified")).strong());
        if ui.button("Close").clicked() {
            asked = Some(Asked::Close);
        }
        ui.add_space(16.0);
        ui.separator();
        ui.label(
            RichText::new(format!(
                "If {user} changed devices and you cannot compare again now, you can forget \
                 the verification:"
            ))
            .weak(),
        );
        if ui.small_button("Forget the verification").clicked() {
            asked = Some(Asked::Run(Command::Verify {
                user: user.clone(),
                action: Verify::Reset,
            }));
        }
    } else {
        ui.horizontal(|ui| {
            if ui.button("They match: mark verified").clicked() {
                asked = Some(Asked::Run(Command::Verify {
                    user: user.clone(),
                    action: Verify::Confirm(verification.safety_number.clone()),
                }));
            }
            if ui.button("Close").clicked() {
                asked = Some(Asked::Close);
            }
        });
    }
    asked
}

pub(super) fn waiting_files(ui: &mut egui::Ui, list: Option<&[Offer]>) -> Option<Asked> {
    let mut asked = None;
    match list {
        None => {
            ui.label("Reading…");
        }
        Some([]) => {
            ui.label("No file is waiting.");
        }
        Some(list) => {
            egui::Grid::new("offers").striped(true).show(ui, |ui| {
                for offer in list {
                    ui.label(format!(
                        "{} ({}) from {}",
                        offer.name,
                        crate::timeline::human_size(offer.size),
                        offer.from
                    ));
                    if ui.small_button("Accept").clicked() {
                        asked = Some(Asked::Run(Command::Accept(offer.id)));
                    }
                    if ui.small_button("Reject").clicked() {
                        asked = Some(Asked::Run(Command::Reject(offer.id)));
                    }
                    ui.end_row();
                }
            });
        }
    }
    if ui.button("Close").clicked() {
        asked = Some(Asked::Close);
    }
    asked
}

pub(super) fn groups(
    ui: &mut egui::Ui,
    shown: Option<&(Vec<GroupInfo>, Vec<Invitation>)>,
) -> Option<Asked> {
    let mut asked = None;
    match shown {
        None => {
            ui.label("Reading…");
        }
        Some((groups, invitations)) => {
            if groups.is_empty() {
                ui.label("You are in no group yet.");
            }
            for group in groups {
                let members: Vec<&str> = group.members.iter().map(|m| m.as_str()).collect();
                ui.label(format!(
                    "#{} (owner {}): {}",
                    group.name,
                    group.owner,
                    members.join(", ")
                ));
            }
            for invitation in invitations {
                ui.horizontal(|ui| {
                    ui.label(format!(
                        "{} invited you to #{}",
                        invitation.by, invitation.group
                    ));
                    if ui.small_button("Join").clicked() {
                        asked = Some(Asked::RunAndClose(Command::GroupAccept {
                            group: invitation.group.clone(),
                        }));
                    }
                    if ui.small_button("Decline").clicked() {
                        asked = Some(Asked::RunAndClose(Command::GroupDecline {
                            group: invitation.group.clone(),
                        }));
                    }
                });
            }
        }
    }
    if ui.button("Close").clicked() {
        asked = Some(Asked::Close);
    }
    asked
}

/// A group's other members, each with Remove (the server refuses it but
/// from the owner, and says so).
pub(crate) fn members(
    ui: &mut egui::Ui,
    group: &GroupName,
    members: &[Username],
    removing: &mut Option<Username>,
) -> Option<Asked> {
    if let Some(user) = removing.clone() {
        ui.label(format!(
            "Remove {user} from #{group}? They get no message sent to it from now on."
        ));
        let mut asked = None;
        ui.horizontal(|ui| {
            if ui.button("Yes, remove").clicked() {
                asked = Some(Asked::RunAndClose(Command::GroupKick {
                    group: group.clone(),
                    members: vec![user],
                }));
            }
            if ui.button("No").clicked() {
                *removing = None;
            }
        });
        return asked;
    }
    if members.is_empty() {
        ui.label("Nobody else is in this group.");
    }
    egui::Grid::new("members").striped(true).show(ui, |ui| {
        for member in members {
            ui.label(member.as_str());
            if ui.small_button(format!("Remove {member}…")).clicked() {
                *removing = Some(member.clone());
            }
            ui.end_row();
        }
    });
    ui.label(RichText::new("Only the group's owner can remove members.").weak());
    ui.button("Close").clicked().then_some(Asked::Close)
}
