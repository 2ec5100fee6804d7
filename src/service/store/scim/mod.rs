//! SCIM Users and Groups in the store, by job: records and reads by id, the
//! value index, filtered listing, memberships, and the write transaction the
//! SCIM service composes (resource + membership + role + audit in one commit).

mod listing;
mod members;
mod records;
mod values;
mod write;

pub use listing::ListQuery;
pub(super) use members::group_names_of;
pub use members::{Member, NewMember};
pub use records::{MemberRow, ResourceWrite, ScimRecord};
pub(super) use records::{kind_of, kind_of_principal};
pub use write::{NewResource, ScimTx, UserRow, is_unique_violation, unique_attribute};
