//! Runs: an answer being generated, on the server, independent of any browser.
//!
//! [`Runs::start`] stores the person's message and an empty answer, then streams the model's
//! answer in a task of its own. Everything a run does is an event on its chat's channel; a
//! subscriber gets the events it missed (by event id) and then the live ones. Text is flushed to
//! the database every [`FLUSH_EVERY`], not token by token, so a crash keeps all but the last moment
//! of an answer. Closing a tab does not stop a run; [`Runs::stop`] does.
//!
//! Every answer is a run of the agent graph ([`crate::agent`]; with no tools when the person has
//! none): it pauses when the model asks for tools (the answer is then `waiting`, and the run holds
//! no task), and [`Runs::decide`] records the person's decisions and, with the last one, resumes
//! it, on whichever instance the decision lands.
//!
//! Instances on one database tell each other their runs' events ([`instances`]), so a page follows
//! a run whichever instance its event stream is on, and Stop reaches a run on another instance.
//!
//! | module | owns |
//! |---|---|
//! | [`events`] | what the event stream carries, and the events a checkpoint makes |
//! | [`channels`] | each chat's channel here: its log, live run, subscribers and run slot |
//! | [`answer`] | an answer's life: send, tokens, the graph driven, Stop, the end |
//! | [`decisions`] | the person's decisions on tool calls, and the run resumed |
//! | [`instances`], [`sharing`] | the other instances on the database, and what is said to them |

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use uuid::Uuid;

use crate::chats::Status;
use crate::llm::{Catalog, LlmClient};
use crate::local_models::Offer;
use crate::mcp::Mcp;
use crate::{Database, Error, Result};

mod answer;
mod channels;
mod decisions;
mod events;
mod instances;
mod questions;
mod sharing;

pub use answer::{FLUSH_EVERY, SETTLE_EVERY, Started, WAITING};
use channels::Channel;
pub use channels::{Position, Subscription};
pub use decisions::{Always, Choice};
pub use events::{ChatEvent, EventId, EventKind};
pub use instances::CHANNEL;
use instances::{Instances, Note};

/// All runs of this server. Cheap to clone.
#[derive(Clone)]
pub struct Runs {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    llm: LlmClient,
    models: Offer,
    mcp: Mcp,
    epoch: u64,
    channels: Mutex<HashMap<Uuid, Channel>>,
    /// The highest sequence number of a forgotten channel (new channels number after it).
    forgotten_seq: std::sync::atomic::AtomicU64,
    /// The other instances on this database, and what this one tells them.
    instances: Instances,
    /// True once the server is shutting down: event streams end, runs are interrupted.
    closing: watch::Sender<bool>,
    /// The runs this instance paused for approval lately (decisions on them need no read first).
    paused: crate::agent::store::Paused,
    /// The tool servers' questions this instance's calls wait on.
    questions: questions::Waiting,
}

impl Runs {
    pub fn new(db: Database, llm: LlmClient, models: impl Into<Offer>, mcp: Mcp) -> Self {
        // Milliseconds, and three random digits: instances started in the same millisecond differ.
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default()
            * 1_000
            + (Uuid::new_v4().as_u128() % 1_000) as u64;
        Self {
            inner: Arc::new(Inner {
                db,
                llm,
                models: models.into(),
                mcp,
                epoch,
                channels: Mutex::new(HashMap::new()),
                forgotten_seq: Default::default(),
                instances: Instances::new(),
                closing: watch::channel(false).0,
                paused: Default::default(),
                questions: Default::default(),
            }),
        }
    }

    /// The models on offer now.
    pub fn models(&self) -> Arc<Catalog> {
        self.inner.models.now()
    }

    /// The models on offer, after searching this machine again for a model server if none is
    /// (see [`Offer::current`]).
    pub async fn offered(&self) -> Arc<Catalog> {
        self.inner.models.current().await
    }

    /// The models on offer to one person: those limited to groups they are not in are gone.
    pub async fn offered_to(&self, user_id: Uuid) -> Result<Catalog> {
        let access = crate::access::Access::of(&self.inner.db, user_id).await?;
        Ok(self.offered().await.for_access(&access))
    }

    /// What a person with `access` may answer with in a chat that chose `chosen`: the models on
    /// offer to them,
    /// or, when the chat's model is limited to groups they are not in, why not (as not found,
    /// the way a thing that is not theirs is answered).
    pub(super) async fn models_for(
        &self,
        access: &crate::access::Access,
        chosen: Option<&str>,
    ) -> Result<Catalog> {
        let all = self.offered().await;
        let mine = all.for_access(access);
        if let Some(name) = chosen.filter(|n| !n.is_empty())
            && all.offers(name)
            && !mine.offers(name)
        {
            return Err(Error::NotFound(format!(
                "The model '{name}' chosen for this chat is not available to you. Choose another one."
            )));
        }
        Ok(mine)
    }

    /// The models of the environment (read-only in the app).
    pub fn configured_models(&self) -> &Catalog {
        self.inner.models.configured()
    }

    /// The key that opens the secrets stored in the database.
    pub fn secret_key(&self) -> &crate::secrets::SecretKey {
        self.inner.mcp.key()
    }

    /// The client that asks the models.
    pub fn llm(&self) -> &LlmClient {
        &self.inner.llm
    }

    /// Reads the models added in the app again and offers them: at start, and when an
    /// instance says they changed.
    pub async fn reload_models(&self) -> Result<()> {
        let key = self.inner.mcp.key();
        let stored = crate::model_admin::stored_catalog(&self.inner.db, key).await?;
        self.inner.models.set_stored(stored);
        Ok(())
    }

    /// After an administrator changed the models in the app: offered at once here, and on the
    /// other instances as soon as they hear of it.
    pub async fn models_changed(&self) -> Result<()> {
        self.reload_models().await?;
        self.inner.instances.tell(Note::ModelsChanged);
        Ok(())
    }

    /// Shutting down: every live run ends as interrupted, keeping its text, and every event
    /// stream ends. Waits (up to 5 s) for the runs to write their end, then (up to 1 s more) for
    /// the other instances to be told.
    pub async fn shutdown(&self) {
        self.end_runs().await;
        let instances = &self.inner.instances;
        if instances.is_listening() {
            instances.tell(Note::Bye);
        }
        instances.flushed(Duration::from_secs(1)).await;
    }

    async fn end_runs(&self) {
        self.inner.closing.send_replace(true);
        {
            let channels = self.inner.channels.lock().expect("not poisoned");
            for live in channels.values().filter_map(|c| c.live.as_ref()) {
                let _ = live.stop.send(Some(Status::Interrupted));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let any_live = {
                let channels = self.inner.channels.lock().expect("not poisoned");
                channels.values().any(|c| c.live.is_some())
            };
            if !any_live {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resolves when the server starts shutting down (event streams end then).
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closing = self.inner.closing.subscribe();
        async move {
            let _ = closing.wait_for(|c| *c).await;
        }
    }
}
