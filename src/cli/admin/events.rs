//! `idsync admin events`: a workspace's lifecycle events, in order, to read
//! back what the product may have missed.

use clap::Subcommand;

use super::AdminArgs;
use super::output::{print, table};

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Events after a sequence number, oldest first.
    List {
        #[arg(long, short = 'w')]
        workspace: String,
        /// Only events after this `seq` (default: from the first kept).
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

pub async fn run(admin: &AdminArgs, command: &EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::List {
            workspace,
            after,
            limit,
        } => {
            let page = admin.client()?.events(workspace, *after, *limit).await?;
            print(admin.output, &page, || {
                let rows = page
                    .items
                    .iter()
                    .map(|e| {
                        let who = ["userName", "displayName", "name", "id"]
                            .iter()
                            .find_map(|k| e.data[*k].as_str())
                            .unwrap_or("-");
                        vec![
                            e.seq.to_string(),
                            e.at.to_string(),
                            e.kind.clone(),
                            who.to_string(),
                            e.id.clone(),
                        ]
                    })
                    .collect();
                let mut out = table(&["SEQ", "AT", "TYPE", "SUBJECT", "ID"], rows);
                out.push_str(&format!("next: --after {}\n", page.next));
                out
            })
        }
    }
}
