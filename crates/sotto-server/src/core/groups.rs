//! Groups: creating, inviting, joining, leaving, kicking, deleting. A
//! group's owner invites; an invitee becomes a member only by accepting
//! (`GroupAccept`), and sees the group from then on.

use std::collections::HashSet;

use sotto_proto::limits::{
    MAX_GROUP_MEMBERS, MAX_INVITATIONS_FROM_ONE, MAX_PENDING_INVITATIONS,
    MAX_USERS_PER_GROUP_REQUEST,
};
use sotto_proto::{ErrorCode, ErrorReply, GroupName, Response, RoomContent, RoomRef, Username};

use super::handlers::too_large;
use super::state::Room;
use super::{Core, Effects, err};
use crate::store::RoomKind;
use crate::store::Writer as _;

type Reply = Result<Response, ErrorReply>;

/// About what one notice takes in the store, for the inviter's quota.
const NOTICE_SIZE: usize = 200;

impl Core {
    pub(super) fn group_room(&self, group: &GroupName) -> Result<u64, ErrorReply> {
        self.dir
            .groups
            .get(group)
            .copied()
            .ok_or_else(|| err(ErrorCode::UnknownGroup, format!("no such group: {group}")))
    }

    pub(super) fn member_group(&self, group: &GroupName, user: i64) -> Result<u64, ErrorReply> {
        let room_id = self.group_room(group)?;
        let is_member = self
            .dir
            .rooms
            .get(&room_id)
            .is_some_and(|room| room.members.contains_key(&user));
        if !is_member {
            return Err(err(
                ErrorCode::NotMember,
                format!("you are not a member of group {group}"),
            ));
        }
        Ok(room_id)
    }

    fn owned_group(&self, group: &GroupName, user: i64) -> Result<u64, ErrorReply> {
        let room_id = self.member_group(group, user)?;
        let owner_id = self.dir.rooms.get(&room_id).and_then(|room| room.owner);
        if owner_id != Some(user) {
            let owner = owner_id.and_then(|o| self.dir.user_names.get(&o));
            return Err(err(
                ErrorCode::NotOwner,
                format!(
                    "only the owner of {group} ({}) can do that",
                    owner.map_or("unknown", |o| o.as_str())
                ),
            ));
        }
        Ok(room_id)
    }

    /// Resolves names to distinct user ids (keeping order), or explains
    /// which name is unknown.
    fn resolve(&self, names: &[Username]) -> Result<Vec<(i64, Username)>, ErrorReply> {
        if names.len() > MAX_USERS_PER_GROUP_REQUEST {
            return Err(err(
                ErrorCode::Invalid,
                format!("at most {MAX_USERS_PER_GROUP_REQUEST} users per request"),
            ));
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for name in names {
            let id = self.user_id(name)?;
            if seen.insert(id) {
                out.push((id, name.clone()));
            }
        }
        Ok(out)
    }

    pub(super) fn group_create(
        &mut self,
        user: i64,
        group: GroupName,
        members: Vec<Username>,
        fx: &mut Effects,
    ) -> anyhow::Result<Reply> {
        if self.dir.groups.contains_key(&group) {
            return Ok(Err(err(
                ErrorCode::GroupExists,
                format!("a group named {group} already exists"),
            )));
        }
        let mut invitees = check!(self.resolve(&members));
        invitees.retain(|(id, _)| *id != user);
        if invitees.len() + 1 > MAX_GROUP_MEMBERS {
            return Ok(Err(too_large()));
        }
        let owner = (user, self.name(user)?);
        check!(self.check_group_quota(std::iter::once(&owner)));
        check!(self.check_invitees(user, &invitees));
        let room_id = self.insert_room(RoomKind::Group, Some(&group), Some(user), None)?;
        self.dir.groups.insert(group.clone(), room_id);
        self.dir.rooms.insert(
            room_id,
            Room::new(
                RoomKind::Group,
                RoomRef::Group {
                    name: group.clone(),
                },
                Some(user),
            ),
        );
        self.add_member(room_id, user, 0)?;
        self.append(
            fx,
            room_id,
            user,
            RoomContent::GroupCreated {
                members: vec![owner.1],
            },
        )?;
        self.invite(fx, room_id, &group, user, invitees)?;
        Ok(self.group_reply(room_id))
    }

    /// Refuses if one of `users` is already in as many groups as a user
    /// may be.
    fn check_group_quota<'a>(
        &self,
        users: impl IntoIterator<Item = &'a (i64, Username)>,
    ) -> Result<(), ErrorReply> {
        for (id, name) in users {
            let groups = self.dir.user_rooms.get(id).map_or(0, |rooms| {
                rooms
                    .iter()
                    .filter(|r| {
                        self.dir
                            .rooms
                            .get(r)
                            .is_some_and(|room| room.kind == RoomKind::Group)
                    })
                    .count()
            });
            if groups >= self.quotas.groups_per_user {
                return Err(err(
                    ErrorCode::QuotaExceeded,
                    format!(
                        "{name} is in {groups} groups, the most this server allows ({})",
                        self.quotas.groups_per_user
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Refuses to invite a user who is in as many groups as allowed, or
    /// has as many invitations waiting as allowed.
    fn check_invitees(&self, by: i64, invitees: &[(i64, Username)]) -> Result<(), ErrorReply> {
        self.check_group_quota(invitees)?;
        // Each invitation is a notice stored for its invitee, counted as the
        // inviter's.
        self.check_sender_stored(by, invitees.len() * NOTICE_SIZE)?;
        for (id, name) in invitees {
            let rooms = self.dir.invitations.get(id);
            let waiting = rooms.map_or(0, |i| i.len());
            if waiting >= MAX_PENDING_INVITATIONS {
                return Err(err(
                    ErrorCode::QuotaExceeded,
                    format!(
                        "{name} has {waiting} invitations waiting for an answer, the most \
                         this server keeps"
                    ),
                ));
            }
            let from_you = rooms.into_iter().flatten().filter(|room| {
                self.dir
                    .rooms
                    .get(room)
                    .and_then(|r| r.invited.get(id))
                    .is_some_and(|(inviter, _)| *inviter == by)
            });
            if from_you.count() >= MAX_INVITATIONS_FROM_ONE {
                return Err(err(
                    ErrorCode::QuotaExceeded,
                    format!(
                        "{name} has {MAX_INVITATIONS_FROM_ONE} invitations from you waiting \
                         for an answer"
                    ),
                ));
            }
            let notices = self
                .dir
                .notices
                .get(id)
                .map_or(0, |room| self.usage.room_bytes(*room));
            if notices >= self.quotas.notices_bytes {
                return Err(err(
                    ErrorCode::QuotaExceeded,
                    format!("{name} has too many unread notices; try again later"),
                ));
            }
        }
        Ok(())
    }

    /// Records invitations to `room_id` from `by` and tells the group and
    /// each invitee.
    fn invite(
        &mut self,
        fx: &mut Effects,
        room_id: u64,
        group: &GroupName,
        by: i64,
        invitees: Vec<(i64, Username)>,
    ) -> anyhow::Result<()> {
        if invitees.is_empty() {
            return Ok(());
        }
        let ts = super::now_ms();
        for (id, _) in &invitees {
            self.db.add_invitation(room_id, *id, by, ts)?;
            if let Some(room) = self.dir.rooms.get_mut(&room_id) {
                room.invited.insert(*id, (by, ts));
            }
            self.dir.invitations.entry(*id).or_default().insert(room_id);
        }
        let names = invitees.iter().map(|(_, n)| n.clone()).collect();
        self.append(
            fx,
            room_id,
            by,
            RoomContent::MembersInvited { members: names },
        )?;
        for (id, _) in invitees {
            let notices = self.notices_room(id)?;
            self.append(
                fx,
                notices,
                by,
                RoomContent::Invited {
                    group: group.clone(),
                    room_id,
                },
            )?;
        }
        Ok(())
    }

    /// Forgets `user`'s invitation to `room_id`, if there is one.
    fn remove_invitation(&mut self, room_id: u64, user: i64) -> anyhow::Result<bool> {
        let had = self
            .dir
            .rooms
            .get_mut(&room_id)
            .and_then(|room| room.invited.remove(&user))
            .is_some();
        if had {
            self.db.delete_invitation(room_id, user)?;
        }
        if let Some(rooms) = self.dir.invitations.get_mut(&user) {
            rooms.remove(&room_id);
            if rooms.is_empty() {
                self.dir.invitations.remove(&user);
            }
        }
        Ok(had)
    }

    fn group_reply(&self, room_id: u64) -> Reply {
        self.dir
            .group_info(room_id, usize::MAX)
            .map(Response::Group)
            .ok_or_else(|| err(ErrorCode::Internal, "group vanished"))
    }

    /// Invites users (owner only); they join when they accept.
    pub(super) fn group_add(
        &mut self,
        user: i64,
        group: GroupName,
        members: Vec<Username>,
        fx: &mut Effects,
    ) -> anyhow::Result<Reply> {
        let room_id = check!(self.owned_group(&group, user));
        let resolved = check!(self.resolve(&members));
        let room = self.room(room_id)?;
        let new: Vec<(i64, Username)> = resolved
            .into_iter()
            .filter(|(id, _)| !room.members.contains_key(id) && !room.invited.contains_key(id))
            .collect();
        if new.is_empty() {
            return Ok(Err(err(
                ErrorCode::Invalid,
                format!("they are already members of {group}, or invited to it"),
            )));
        }
        if room.members.len() + room.invited.len() + new.len() > MAX_GROUP_MEMBERS {
            return Ok(Err(too_large()));
        }
        check!(self.check_invitees(user, &new));
        self.invite(fx, room_id, &group, user, new)?;
        Ok(self.group_reply(room_id))
    }

    /// Accepts an invitation: the user is a member from the event that
    /// announces it on.
    pub(super) fn group_accept(
        &mut self,
        user: i64,
        group: GroupName,
        invited_to: Option<u64>,
        fx: &mut Effects,
    ) -> anyhow::Result<Reply> {
        let room_id = check!(self.group_room(&group));
        if invited_to.is_some_and(|id| id != room_id) {
            return Ok(Err(err(
                ErrorCode::Invalid,
                format!("that invitation is no longer valid: {group} was deleted since"),
            )));
        }
        let room = self.room(room_id)?;
        if room.members.contains_key(&user) {
            return Ok(Err(err(
                ErrorCode::Invalid,
                format!("you are already a member of {group}"),
            )));
        }
        if !room.invited.contains_key(&user) {
            return Ok(Err(err(
                ErrorCode::Invalid,
                format!("you have no invitation to {group}"),
            )));
        }
        let me = (user, self.name(user)?);
        check!(self.check_group_quota(std::iter::once(&me)));
        let joined_seq = room.last_seq;
        self.remove_invitation(room_id, user)?;
        self.add_member(room_id, user, joined_seq)?;
        self.append(fx, room_id, user, RoomContent::MemberJoined)?;
        Ok(self.group_reply(room_id))
    }

    /// Declines an invitation; the group's members are told.
    pub(super) fn group_decline(
        &mut self,
        user: i64,
        group: GroupName,
        fx: &mut Effects,
    ) -> anyhow::Result<Reply> {
        let room_id = check!(self.group_room(&group));
        if !self.remove_invitation(room_id, user)? {
            return Ok(Err(err(
                ErrorCode::Invalid,
                format!("you have no invitation to {group}"),
            )));
        }
        self.append(fx, room_id, user, RoomContent::InvitationDeclined)?;
        Ok(Ok(Response::Done))
    }

    /// Removes members, or withdraws invitations (owner only).
    pub(super) fn group_kick(
        &mut self,
        user: i64,
        group: GroupName,
        members: Vec<Username>,
        fx: &mut Effects,
    ) -> anyhow::Result<Reply> {
        let room_id = check!(self.owned_group(&group, user));
        let resolved = check!(self.resolve(&members));
        for (id, name) in &resolved {
            if *id == user {
                return Ok(Err(err(
                    ErrorCode::Invalid,
                    "you cannot kick yourself; use @group leave or @group delete",
                )));
            }
            let room = self.room(room_id)?;
            if !room.members.contains_key(id) && !room.invited.contains_key(id) {
                return Ok(Err(err(
                    ErrorCode::NotMember,
                    format!("{name} is not a member of {group}, nor invited to it"),
                )));
            }
        }
        let names: Vec<Username> = resolved.iter().map(|(_, n)| n.clone()).collect();
        // Announce while they are still members, so they learn it too.
        self.append(
            fx,
            room_id,
            user,
            RoomContent::MembersKicked { members: names },
        )?;
        for (id, _) in resolved {
            if !self.remove_invitation(room_id, id)? {
                self.remove_member(room_id, id)?;
            }
            let notices = self.notices_room(id)?;
            self.append(
                fx,
                notices,
                user,
                RoomContent::RemovedFromGroup {
                    group: group.clone(),
                },
            )?;
        }
        Ok(self.group_reply(room_id))
    }

    pub(super) fn group_leave(
        &mut self,
        user: i64,
        group: GroupName,
        fx: &mut Effects,
    ) -> anyhow::Result<Reply> {
        let room_id = check!(self.member_group(&group, user));
        let room = self.room(room_id)?;
        let remaining: Vec<i64> = room
            .members_in_order()
            .into_iter()
            .filter(|id| *id != user)
            .collect();
        let Some(first) = remaining.first().copied() else {
            // The last member leaving deletes the group.
            self.delete_group(room_id)?;
            return Ok(Ok(Response::Done));
        };
        let new_owner = if room.owner == Some(user) {
            Some(first)
        } else {
            None
        };
        let new_owner_name = new_owner.map(|o| self.name(o)).transpose()?;
        self.append(
            fx,
            room_id,
            user,
            RoomContent::MemberLeft {
                new_owner: new_owner_name,
            },
        )?;
        self.remove_member(room_id, user)?;
        if let Some(owner) = new_owner {
            self.db.set_owner(room_id, owner)?;
            if let Some(room) = self.dir.rooms.get_mut(&room_id) {
                room.owner = Some(owner);
            }
        }
        Ok(Ok(Response::Done))
    }

    pub(super) fn group_delete(
        &mut self,
        user: i64,
        group: GroupName,
        fx: &mut Effects,
    ) -> anyhow::Result<Reply> {
        let room_id = check!(self.owned_group(&group, user));
        let room = self.room(room_id)?;
        let mut members = room.members_in_order();
        members.extend(room.invited.keys());
        self.delete_group(room_id)?;
        for member in members {
            let notices = self.notices_room(member)?;
            self.append(
                fx,
                notices,
                user,
                RoomContent::GroupDeleted {
                    group: group.clone(),
                },
            )?;
        }
        Ok(Ok(Response::Done))
    }

    fn delete_group(&mut self, room_id: u64) -> anyhow::Result<()> {
        self.usage.prune(&mut self.db, room_id, u64::MAX)?;
        self.db.delete_room(room_id)?;
        self.dir.remove_room(room_id);
        Ok(())
    }
}
