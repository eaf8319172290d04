//! The network side of the app: a tokio runtime on a thread of its own
//! that owns the client, takes [`ToNet`] requests from the UI and sends
//! back [`FromNet`] messages, waking the UI (`request_repaint`) for each.
//! The UI thread only ever `try_recv`s: it never waits on the network.
//!
//! Bounds: requests go through a bounded channel (the UI refuses a
//! request when it is full); events through a bounded one (the client's
//! own event channel waits meanwhile, as its documentation allows);
//! command results through an unbounded one, since each answers one
//! request and the UI keeps at most [`MAX_IN_FLIGHT`] unanswered.

use std::path::PathBuf;
use std::sync::Arc;

use sotto_client::command::Command;
use sotto_client::dispatch::Outcome;
use sotto_client::front::{self, Action, Done};
use sotto_client::model::ConversationId;
use sotto_client::{Client, ClientError, ClientEvent, ConnectOptions, Fingerprint, Session};
use sotto_proto::{Password, Username};
use tokio::sync::mpsc;

/// Requests waiting for the network thread.
pub const REQUEST_CAPACITY: usize = 64;
/// Events waiting for the UI.
pub const EVENT_CAPACITY: usize = 1024;
/// Commands the UI may have started and not seen the result of.
pub const MAX_IN_FLIGHT: usize = 256;

/// How to sign in.
#[derive(Debug)]
pub enum Secret {
    Password(Password),
    /// With the device key kept by "remember me".
    Remembered,
}

/// What the connect screen asks for.
#[derive(Debug)]
pub struct ConnectRequest {
    pub server: String,
    pub user: Username,
    pub secret: Secret,
    pub server_password: Option<Password>,
    /// Remember this device after signing in (forget it if not).
    pub remember: bool,
    /// Create the account if the name is free.
    pub create: bool,
    pub data_dir: PathBuf,
}

/// What the UI asks of the network thread.
#[derive(Debug)]
pub enum ToNet {
    Connect(ConnectRequest),
    /// A command from a typed line (or one run as if typed).
    Run(Action),
    /// A command of the dialog holding `token`: its result goes back to it.
    Dialog {
        token: u64,
        command: Command,
    },
    /// The page of history before this time, for a conversation.
    Older(ConversationId, i64),
    ChangePassword {
        old: Password,
        new: Password,
    },
    /// Remember this device (or forget it).
    Remember(bool),
    /// Forget this device and disconnect.
    SignOut,
}

/// A logged-in session, for the UI.
#[derive(Debug, Clone)]
pub struct Connected {
    pub session: Session,
    /// The server as typed.
    pub server: String,
    pub fingerprint: Fingerprint,
    pub remembered: bool,
}

/// What the network thread tells the UI.
#[derive(Debug)]
pub enum FromNet {
    /// A server seen for the first time: trust it? The answer goes back
    /// on `reply` (dropping it says no).
    Trust {
        server: String,
        fingerprint: Fingerprint,
        reply: std::sync::mpsc::Sender<bool>,
    },
    Connected(Box<Connected>),
    /// Connecting failed; nothing is connected.
    Failed(ClientError),
    Event(ClientEvent),
    /// Signed out: the connection closed, and the device forgotten (or
    /// why not).
    SignedOut(Result<(), String>),
}

/// A finished request.
#[derive(Debug)]
pub enum Finished {
    /// For the front end's state (a typed line, a message, history).
    Front(Done),
    /// For the dialog holding this token, if it is still open.
    Dialog(u64, Result<Outcome, ClientError>),
}

/// The UI's end.
#[derive(Debug)]
pub struct Net {
    requests: mpsc::Sender<ToNet>,
    events: mpsc::Receiver<FromNet>,
    done: mpsc::UnboundedReceiver<Finished>,
}

/// Wakes the UI when something arrived.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// The network thread's end.
#[derive(Clone)]
struct Out {
    events: mpsc::Sender<FromNet>,
    done: mpsc::UnboundedSender<Finished>,
    wake: Waker,
}

impl Out {
    async fn send(&self, message: FromNet) {
        let _ = self.events.send(message).await;
        (self.wake)();
    }

    /// Hands a command's result to the UI.
    fn done(&self) -> impl FnOnce(Done) + Send + 'static {
        let out = self.clone();
        move |done| out.finished(Finished::Front(done))
    }

    fn finished(&self, finished: Finished) {
        let _ = self.done.send(finished);
        (self.wake)();
    }
}

impl Net {
    /// Starts the network thread; `wake` is called whenever a message is
    /// waiting.
    pub fn start(wake: Waker) -> std::io::Result<Self> {
        let (requests_tx, requests_rx) = mpsc::channel(REQUEST_CAPACITY);
        let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sotto-net")
            .enable_all()
            .build()?;
        let out = Out {
            events: events_tx,
            done: done_tx,
            wake,
        };
        std::thread::Builder::new()
            .name("sotto-net-main".into())
            .spawn(move || runtime.block_on(serve(requests_rx, out)))?;
        Ok(Self {
            requests: requests_tx,
            events: events_rx,
            done: done_rx,
        })
    }

    /// Hands a request to the network thread; an error to show when it
    /// is too busy to take it.
    pub fn send(&self, request: ToNet) -> Result<(), String> {
        self.requests.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                "too much is waiting for the network; try again in a moment".to_owned()
            }
            mpsc::error::TrySendError::Closed(_) => "the network thread has stopped".to_owned(),
        })
    }

    /// The next message, if one is waiting.
    pub fn try_recv(&mut self) -> Option<FromNet> {
        self.events.try_recv().ok()
    }

    /// The next command result, if one is waiting.
    pub fn try_done(&mut self) -> Option<Finished> {
        self.done.try_recv().ok()
    }
}

/// The network thread: one client at a time.
async fn serve(mut requests: mpsc::Receiver<ToNet>, out: Out) {
    let mut session: Option<(Client, sotto_client::Events, PathBuf)> = None;
    loop {
        let next_event = async {
            match session.as_mut() {
                Some((_, events, _)) => events.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            request = requests.recv() => {
                let Some(request) = request else { break };
                handle(request, &mut session, &out).await;
            }
            event = next_event => match event {
                Some(event) => out.send(FromNet::Event(event)).await,
                // The client is gone (its last event was `Disconnected`).
                None => session = None,
            },
        }
    }
    // The window closed: say goodbye to the server.
    if let Some((client, _, _)) = session {
        let _ = client.quit().await;
    }
}

async fn handle(
    request: ToNet,
    session: &mut Option<(Client, sotto_client::Events, PathBuf)>,
    out: &Out,
) {
    let client = session.as_ref().map(|(client, _, _)| client.clone());
    match request {
        ToNet::Connect(request) => {
            if let Some((old, _, _)) = session.take() {
                let _ = old.quit().await;
            }
            let data_dir = request.data_dir.clone();
            match connect(request, out).await {
                Ok((connected, client, events)) => {
                    // After `Connected`: its result must find the session.
                    out.send(FromNet::Connected(Box::new(connected))).await;
                    front::read_start_history(&client, out.done());
                    *session = Some((client, events, data_dir));
                }
                Err(e) => out.send(FromNet::Failed(e)).await,
            }
        }
        ToNet::Run(action) => match client {
            Some(client) => front::perform(&client, action, out.done()),
            None => not_connected(out, action),
        },
        ToNet::Dialog { token, command } => {
            let Some(client) = client else {
                return out.finished(Finished::Dialog(token, Err(ClientError::Disconnected)));
            };
            let out = out.clone();
            tokio::spawn(async move {
                let result = sotto_client::dispatch::execute(&client, command).await;
                out.finished(Finished::Dialog(token, result));
            });
        }
        ToNet::Older(id, before) => match client {
            Some(client) => front::read_older(&client, id, before, out.done()),
            None => (out.done())(Done::Older(id, Err(ClientError::Disconnected))),
        },
        ToNet::ChangePassword { old, new } => {
            let done = out.done();
            match client {
                Some(client) => front::change_password(&client, old, new, done),
                None => done(Done::Command(Err(ClientError::Disconnected), None)),
            }
        }
        ToNet::Remember(on) => {
            let done = out.done();
            let Some(client) = client else {
                return done(Done::Command(Err(ClientError::Disconnected), None));
            };
            // Awaited here, not on a task: remembering and forgetting
            // happen in the order asked.
            let result = if on {
                client.remember_device().await
            } else {
                client.forget_device().await
            };
            let what = if on { "remember me" } else { "forget me" };
            done(Done::Command(result.map(|()| Outcome::Done(what)), None));
        }
        ToNet::SignOut => {
            let mut forgotten = Ok(());
            if let Some((client, _, _)) = session.take() {
                forgotten = client.forget_device().await.map_err(|e| e.to_string());
                let _ = client.quit().await;
            }
            out.send(FromNet::SignedOut(forgotten)).await;
        }
    }
}

fn not_connected(out: &Out, action: Action) {
    if let Action::Run { pending, .. } = action {
        (out.done())(Done::Command(Err(ClientError::Disconnected), pending));
    }
}

/// Connects and signs in; a server seen for the first time is put to the
/// user through the UI.
async fn connect(
    request: ConnectRequest,
    out: &Out,
) -> Result<(Connected, Client, sotto_client::Events), ClientError> {
    let ConnectRequest {
        server,
        user,
        secret,
        server_password,
        remember,
        create,
        data_dir,
    } = request;
    let asking = out.clone();
    // Runs on a blocking thread: it may wait for the user's answer.
    let ask: sotto_client::AskTrust = Box::new(move |server: &str, fingerprint: &Fingerprint| {
        let (reply, answer) = std::sync::mpsc::channel();
        let question = FromNet::Trust {
            server: server.to_owned(),
            fingerprint: *fingerprint,
            reply,
        };
        if asking.events.blocking_send(question).is_err() {
            return false;
        }
        (asking.wake)();
        answer.recv().unwrap_or(false)
    });
    let options = ConnectOptions {
        server: server.clone(),
        user,
        secret: match secret {
            Secret::Password(password) => sotto_client::Secret::Password(password),
            Secret::Remembered => sotto_client::Secret::Remembered,
        },
        server_password,
        data_dir,
        trust: sotto_client::TrustPolicy::Ask(ask),
        register_only: false,
        sign_in_only: !create,
    };
    let remembered_already = matches!(options.secret, sotto_client::Secret::Remembered);
    let (client, events) = sotto_client::connect(options).await?;
    // "Remember me" as the box says: a device key kept, or none. A device
    // that signed in with its key keeps it.
    let remembered = if remember && remembered_already {
        true
    } else if remember {
        match client.remember_device().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("remembering this device: {e}");
                false
            }
        }
    } else {
        if client.is_remembered()
            && let Err(e) = client.forget_device().await
        {
            tracing::warn!("forgetting this device: {e}");
        }
        false
    };
    let connected = Connected {
        session: client.session().clone(),
        server,
        fingerprint: client.server_fingerprint(),
        remembered,
    };
    Ok((connected, client, events))
}
