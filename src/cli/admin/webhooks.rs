//! `idsync admin webhooks`: where an endpoint's deliveries stand, and
//! replaying a time range to it.

use clap::Subcommand;

use super::AdminArgs;
use super::output::{print, table};
use crate::admin::ReplayRequest;

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Delivered up to, pending, oldest pending, last success and failure.
    Status {
        #[arg(long, short = 'w')]
        workspace: String,
        /// The webhook's name.
        name: String,
    },
    /// Deliver the events of a time range again (same webhook-ids, oldest
    /// first); also lifts a disablement.
    Replay {
        #[arg(long, short = 'w')]
        workspace: String,
        name: String,
        /// RFC 3339: the first moment replayed.
        #[arg(long)]
        from: jiff::Timestamp,
        /// RFC 3339: the last moment replayed (default: now).
        #[arg(long)]
        until: Option<jiff::Timestamp>,
    },
}

pub async fn run(admin: &AdminArgs, command: &WebhooksCommand) -> anyhow::Result<()> {
    let client = admin.client()?;
    match command {
        WebhooksCommand::Status { workspace, name } => {
            let view = client.webhook_deliveries(workspace, name).await?;
            let at = |t: &Option<jiff::Timestamp>| t.map_or("-".to_string(), |t| t.to_string());
            print(admin.output, &view, || {
                let rows = vec![
                    vec!["delivered up to seq".into(), view.delivered_seq.to_string()],
                    vec!["pending".into(), view.pending.to_string()],
                    vec!["oldest pending".into(), at(&view.oldest_pending_at)],
                    vec!["last success".into(), at(&view.last_success_at)],
                    vec!["last failure".into(), at(&view.last_failure_at)],
                    vec![
                        "failure".into(),
                        view.last_failure.clone().unwrap_or("-".into()),
                    ],
                    vec!["next retry".into(), at(&view.next_attempt_at)],
                    vec!["disabled".into(), at(&view.disabled_at)],
                ];
                table(&["FIELD", "VALUE"], rows)
            })
        }
        WebhooksCommand::Replay {
            workspace,
            name,
            from,
            until,
        } => {
            let range = ReplayRequest {
                from: *from,
                until: *until,
            };
            let queued = client.replay_webhook(workspace, name, &range).await?;
            print(admin.output, &queued, || {
                format!("{} events queued for {name} again\n", queued.events)
            })
        }
    }
}
