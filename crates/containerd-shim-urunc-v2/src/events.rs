//! Events to containerd, sent in order by one thread, so that a slow containerd never
//! blocks a task request and TaskStart always precedes the TaskExit behind it.
//!
//! The connection to containerd's ttrpc socket is re-established when it breaks: a
//! containerd restarted while containers run must still get their exit events. As in
//! containerd's own shims, an event is retried a few times with growing pauses and then
//! dropped.

use std::sync::mpsc::{channel, Sender};
use std::time::Duration;

use containerd_shim::event::Event;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::ttrpc::{self, context};
use containerd_shim::protos::EventsClient;
use containerd_shim::util::{connect, timestamp};

/// The protobuf package of containerd's task events.
pub const EVENTS_PACKAGE: &str = "containerd.events";

const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPTS: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

enum Msg {
    Event(Box<Envelope>),
    Flush(Sender<()>),
}

#[derive(Clone)]
pub struct Events {
    tx: Sender<Msg>,
}

struct Forwarder {
    address: String,
    client: Option<EventsClient>,
}

impl Forwarder {
    fn client(&mut self) -> Result<&EventsClient, String> {
        if self.client.is_none() {
            let fd = connect(&self.address).map_err(|e| e.to_string())?;
            let c = ttrpc::Client::new(fd).map_err(|e| e.to_string())?;
            self.client = Some(EventsClient::new(c));
        }
        Ok(self.client.as_ref().expect("just connected"))
    }

    fn forward(&mut self, envelope: &Envelope) {
        let req = ForwardRequest {
            envelope: Some(envelope.clone()).into(),
            ..Default::default()
        };
        let mut pause = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let ctx = context::with_timeout(PUBLISH_TIMEOUT.as_nanos() as i64);
            let result = self
                .client()
                .and_then(|c| c.forward(ctx, &req).map_err(|e| e.to_string()));
            match result {
                Ok(_) => return,
                Err(e) => {
                    log::warn!("publish {} (attempt {attempt}): {e}", envelope.topic);
                    self.client = None;
                    if attempt < ATTEMPTS {
                        std::thread::sleep(pause);
                        pause *= 2;
                    }
                }
            }
        }
        log::error!("dropped event {} after {ATTEMPTS} attempts", envelope.topic);
    }
}

impl Events {
    /// Starts the sending thread for containerd's ttrpc `address`.
    pub fn start(address: String, namespace: String) -> Events {
        let (tx, rx) = channel::<Msg>();
        let mut sender = Forwarder {
            address,
            client: None,
        };
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                for msg in rx {
                    match msg {
                        Msg::Event(mut envelope) => {
                            envelope.namespace.clone_from(&namespace);
                            sender.forward(&envelope);
                        }
                        Msg::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })
            .expect("start the events thread");
        Events { tx }
    }

    pub fn send<E: Event + Message>(&self, event: E) {
        let topic = event.topic();
        log::debug!("event {topic}");
        let any = match to_any(&event, EVENTS_PACKAGE) {
            Ok(a) => a,
            Err(e) => {
                log::error!("encode event {topic}: {e}");
                return;
            }
        };
        let envelope = Envelope {
            timestamp: timestamp().ok().into(),
            topic,
            event: Some(any).into(),
            ..Default::default()
        };
        let _ = self.tx.send(Msg::Event(Box::new(envelope)));
    }

    /// Waits (bounded) until everything queued so far has been sent.
    pub fn flush(&self, timeout: Duration) {
        let (tx, rx) = channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(timeout);
        }
    }
}

/// An `Any` holding `m`, whose type URL is the message's full protobuf name (what
/// containerd's typeurl resolves). Unlike the crate's `convert_to_any` this needs no
/// reflection: building the descriptors costs the shim memory for nothing.
pub fn to_any<M: Message>(
    m: &M,
    package: &str,
) -> Result<Any, containerd_shim::protos::protobuf::Error> {
    Ok(Any {
        type_url: format!("{package}.{}", M::NAME),
        value: m.write_to_bytes()?,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::cgroups::metrics::Metrics;
    use containerd_shim::protos::events::task::{TaskDelete, TaskExit};
    use containerd_shim::protos::shim::oci::ProcessDetails;
    use containerd_shim::util::convert_to_any;

    #[test]
    fn type_urls_are_the_full_protobuf_names() {
        let exit = TaskExit {
            container_id: "c".into(),
            exit_status: 137,
            ..Default::default()
        };
        let ours = to_any(&exit, EVENTS_PACKAGE).unwrap();
        let theirs = convert_to_any(Box::new(exit)).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(ours.type_url, "containerd.events.TaskExit");
        let del = to_any(&TaskDelete::new(), EVENTS_PACKAGE).unwrap();
        assert_eq!(del, convert_to_any(Box::new(TaskDelete::new())).unwrap());
        let m = to_any(&Metrics::new(), crate::stats::METRICS_PACKAGE).unwrap();
        assert_eq!(m, convert_to_any(Box::new(Metrics::new())).unwrap());
        let d = to_any(&ProcessDetails::new(), crate::service::DETAILS_PACKAGE).unwrap();
        assert_eq!(d, convert_to_any(Box::new(ProcessDetails::new())).unwrap());
    }
}
