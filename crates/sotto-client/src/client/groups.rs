//! Groups: create, invite, accept or decline, kick, leave, delete, list;
//! and what verified contacts may do without asking.

use sotto_proto::{GroupInfo, GroupName, Invitation, Request, Response, Username};

use super::{Client, done, group, unexpected};
use crate::ClientError;
use crate::crypto::lock;
use crate::trust::AutoAccept;

impl Client {
    /// Creates a group owned by this user and invites `members`.
    pub async fn group_create(
        &self,
        name: GroupName,
        members: Vec<Username>,
    ) -> Result<GroupInfo, ClientError> {
        group(
            self.request(Request::GroupCreate {
                group: name,
                members,
            })
            .await?,
        )
    }

    /// Invites users (owner only); they join when they accept.
    pub async fn group_add(
        &self,
        name: GroupName,
        members: Vec<Username>,
    ) -> Result<GroupInfo, ClientError> {
        group(
            self.request(Request::GroupAdd {
                group: name,
                members,
            })
            .await?,
        )
    }

    /// Removes members (owner only).
    pub async fn group_kick(
        &self,
        name: GroupName,
        members: Vec<Username>,
    ) -> Result<GroupInfo, ClientError> {
        group(
            self.request(Request::GroupKick {
                group: name,
                members,
            })
            .await?,
        )
    }

    /// Leaves a group.
    pub async fn group_leave(&self, name: GroupName) -> Result<(), ClientError> {
        done(
            self.request(Request::GroupLeave { group: name }).await?,
            "group_leave",
        )
    }

    /// Deletes a group (owner only).
    pub async fn group_delete(&self, name: GroupName) -> Result<(), ClientError> {
        done(
            self.request(Request::GroupDelete { group: name }).await?,
            "group_delete",
        )
    }

    /// This user's groups, and the invitations waiting for an answer.
    pub async fn group_list(&self) -> Result<(Vec<GroupInfo>, Vec<Invitation>), ClientError> {
        match self.request(Request::GroupList).await? {
            Response::Groups {
                groups,
                invitations,
            } => Ok((groups, invitations)),
            other => Err(unexpected("group_list", &other)),
        }
    }

    /// Accepts an invitation: joins the group.
    pub async fn group_accept(&self, name: GroupName) -> Result<GroupInfo, ClientError> {
        group(
            self.request(Request::GroupAccept {
                group: name,
                room_id: None,
            })
            .await?,
        )
    }

    /// Declines an invitation.
    pub async fn group_decline(&self, name: GroupName) -> Result<(), ClientError> {
        done(
            self.request(Request::GroupDecline { group: name }).await?,
            "group_decline",
        )
    }

    /// What verified contacts may do without asking.
    pub fn auto_accept(&self) -> AutoAccept {
        lock(&self.crypto).trust.auto_accept()
    }

    /// Changes what verified contacts may do without asking (kept in the
    /// local store).
    pub async fn set_auto_accept(&self, auto: AutoAccept) -> Result<(), ClientError> {
        lock(&self.crypto).trust.set_auto_accept(auto);
        self.save().await
    }
}
