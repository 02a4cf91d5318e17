//! Shutdown as a type: one [`Trigger`], held by whoever decides that the
//! server stops, and any number of [`Shutdown`] handles that the accept
//! loop, every connection and the HTTP and admin tasks wait on.

use tokio::sync::watch;

/// A new trigger and the first handle on it.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

/// Starts the shutdown. Dropping it without firing also stops every
/// waiter: nobody is left to keep the server running.
pub struct Trigger(watch::Sender<bool>);

impl Trigger {
    /// Tells every handle that the server is stopping.
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }

    /// Another handle on this trigger.
    pub fn handle(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

/// Waits for the shutdown; cheap to clone, one per task.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once the trigger fired (or was dropped); at once if it
    /// already had. Cancel-safe, so it can sit in a `select!` loop.
    pub async fn wait(&mut self) {
        while !*self.0.borrow_and_update() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_handle_sees_the_trigger_even_a_late_one() {
        let (trigger, mut first) = channel();
        let mut second = trigger.handle();
        let waiting = tokio::spawn(async move { second.wait().await });
        trigger.fire();
        waiting.await.unwrap();
        first.wait().await;
        trigger.handle().wait().await;
    }

    #[tokio::test]
    async fn a_dropped_trigger_stops_the_waiters() {
        let (trigger, mut handle) = channel();
        drop(trigger);
        handle.wait().await;
    }
}
