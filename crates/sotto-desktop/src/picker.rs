//! Choosing a file to send, inside the app: a folder's files and
//! folders, a path that can be typed or pasted, and the size limit said
//! before sending. (A system file dialog needs a desktop portal or GTK,
//! which many Linux desktops and every test machine lack.)

use std::path::{Path, PathBuf};

use eframe::egui::{self, RichText};
use sotto_proto::limits::MAX_FILE_LEN;

/// Entries listed from one folder at most.
pub const MAX_LISTED: usize = 5_000;

/// One entry of a folder.
#[derive(Debug, Clone)]
struct Item {
    name: String,
    dir: bool,
    size: u64,
}

/// The picker's state.
#[derive(Debug)]
pub struct Picker {
    dir: PathBuf,
    /// The path typed or chosen.
    pub path: String,
    items: Vec<Item>,
    /// More entries than were listed.
    more: bool,
    error: Option<String>,
}

impl Picker {
    /// A picker showing `dir`.
    pub fn new(dir: PathBuf) -> Self {
        let mut picker = Self {
            dir: PathBuf::new(),
            path: String::new(),
            items: Vec::new(),
            more: false,
            error: None,
        };
        picker.enter(dir);
        picker
    }

    fn enter(&mut self, dir: PathBuf) {
        self.items.clear();
        self.more = false;
        self.error = None;
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    if self.items.len() == MAX_LISTED {
                        self.more = true;
                        break;
                    }
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') {
                        continue;
                    }
                    // Through links: a linked folder is a folder.
                    let meta = std::fs::metadata(entry.path()).ok();
                    self.items.push(Item {
                        name,
                        dir: meta.as_ref().is_some_and(|m| m.is_dir()),
                        size: meta.map_or(0, |m| m.len()),
                    });
                }
                self.items
                    .sort_by(|a, b| b.dir.cmp(&a.dir).then_with(|| a.name.cmp(&b.name)));
                self.dir = dir;
            }
            Err(e) => self.error = Some(format!("{}: {e}", dir.display())),
        }
    }

    /// Draws the picker: `Some(Some(path))` to send, `Some(None)` to
    /// cancel.
    pub fn show(&mut self, ui: &mut egui::Ui) -> Option<Option<PathBuf>> {
        let mut go = None;
        ui.horizontal(|ui| {
            if ui.button("⬆ Up").clicked()
                && let Some(parent) = self.dir.parent()
            {
                go = Some(parent.to_owned());
            }
            ui.label(RichText::new(self.dir.display().to_string()).monospace());
        });
        egui::ScrollArea::vertical()
            .id_salt(("picker", &self.dir))
            .max_height(260.0)
            .show(ui, |ui| {
                if self.items.is_empty() && self.error.is_none() {
                    ui.label(RichText::new("(no files here)").weak());
                }
                for item in &self.items {
                    let label = if item.dir {
                        format!("📁 {}", item.name)
                    } else {
                        format!(
                            "📄 {}  ({})",
                            item.name,
                            crate::timeline::human_size(item.size)
                        )
                    };
                    let chosen = self.path == self.dir.join(&item.name).display().to_string();
                    let response = ui.selectable_label(chosen, label);
                    if response.clicked() {
                        let path = self.dir.join(&item.name);
                        if item.dir {
                            go = Some(path);
                        } else {
                            self.path = path.display().to_string();
                        }
                    }
                }
                if self.more {
                    ui.label(
                        RichText::new(format!("(only the first {MAX_LISTED} are listed)")).weak(),
                    );
                }
            });
        if let Some(dir) = go {
            self.enter(dir);
        }
        ui.horizontal(|ui| {
            let label = ui.label("File");
            ui.add(egui::TextEdit::singleline(&mut self.path).desired_width(360.0))
                .labelled_by(label.id);
        });
        let chosen = Path::new(self.path.trim());
        let size = std::fs::metadata(chosen)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let limit = MAX_FILE_LEN as u64;
        match size {
            Some(size) if size > limit => {
                ui.label(
                    RichText::new(format!(
                        "This file is {}; files are limited to {}.",
                        crate::timeline::human_size(size),
                        crate::timeline::human_size(limit)
                    ))
                    .color(egui::Color32::from_rgb(0xd0, 0x3a, 0x2f)),
                );
            }
            _ => {
                ui.label(
                    RichText::new(format!(
                        "Files up to {} are end-to-end encrypted. You can also drop a file on the window.",
                        crate::timeline::human_size(limit)
                    ))
                    .weak(),
                );
            }
        }
        if let Some(error) = &self.error {
            ui.label(RichText::new(error).color(egui::Color32::from_rgb(0xd0, 0x3a, 0x2f)));
        }
        let mut answer = None;
        ui.horizontal(|ui| {
            let ok = size.is_some_and(|size| size <= limit);
            if ui.add_enabled(ok, egui::Button::new("Send file")).clicked() {
                answer = Some(Some(chosen.to_owned()));
            }
            if ui.button("Cancel").clicked() {
                answer = Some(None);
            }
        });
        answer
    }
}
