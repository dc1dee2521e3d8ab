//! The one way tests wait for an outcome: probe it often until it is there,
//! and fail naming what never came.

use std::time::Duration;

use tokio::time::Instant;

/// How long [`eventually`] waits between two probes.
const INTERVAL: Duration = Duration::from_millis(25);

/// Runs `probe` every 25 ms until it returns `Some`, and returns that value.
/// Panics naming `what` once `deadline` has passed with only `None`s. The
/// probe runs at least once, and once more after the deadline.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_or(what, deadline, probe, String::new).await
}

/// As [`eventually`], adding what `explain` says to the failure (a process's
/// log, say).
pub async fn eventually_or<T, F, Fut>(
    what: &str,
    deadline: Duration,
    mut probe: F,
    explain: impl FnOnce() -> String,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        let expired = Instant::now() >= until;
        if let Some(value) = probe().await {
            return value;
        }
        if expired {
            panic!("{what}: not within {deadline:?}\n{}", explain());
        }
        tokio::time::sleep(INTERVAL).await;
    }
}
