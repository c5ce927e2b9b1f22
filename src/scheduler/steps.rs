//! Clock-step notifications: a thread blocked on a timerfd armed on
//! CLOCK_REALTIME with `TFD_TIMER_CANCEL_ON_SET`, whose read fails with
//! ECANCELED exactly when the real-time clock is set discontinuously (NTP
//! step, `date -s`, resume from suspend). It then tells the scheduler, which
//! re-reads both clocks and applies its step rules.
//!
//! Invariants:
//! - No polling: the thread sleeps in `read` until the clock is set (or the
//!   far-future alarm it re-arms is reached, once a year).
//! - Started with the scheduler thread, once (a reload may bring the first
//!   cron job); if the timerfd cannot be made, `watch` says so and the
//!   scheduler falls back to re-reading the clocks at least every `RECHECK`
//!   while it waits for a wall-clock due time.

use std::os::fd::AsFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

/// How far ahead the alarm is set (re-armed when reached).
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// Start the watcher; each clock step sends `()` on `steps`. Returns false
/// when the kernel offers no such timer (the caller then re-checks the
/// clocks on its own).
pub fn watch(steps: Sender<()>) -> bool {
    let Ok(timer) = TimerFd::new(ClockId::CLOCK_REALTIME, TimerFlags::TFD_CLOEXEC) else {
        return false;
    };
    if arm(&timer).is_err() {
        return false;
    }
    let started = std::thread::Builder::new()
        .name("clock-steps".into())
        .stack_size(64 * 1024)
        .spawn(move || loop {
            let mut buf = [0u8; 8];
            match nix::unistd::read(timer.as_fd(), &mut buf) {
                // Reached the far-future alarm: just re-arm.
                Ok(_) => {}
                Err(Errno::ECANCELED) => {
                    if steps.send(()).is_err() {
                        return;
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("scheduler: clock-step watch failed ({e}); steps are noticed at the next due time");
                    return;
                }
            }
            if arm(&timer).is_err() {
                return;
            }
        });
    started.is_ok()
}

/// Arm the timer `FAR` ahead of now, cancelled by any clock set.
fn arm(timer: &TimerFd) -> nix::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let at = TimeSpec::from_duration(now + FAR);
    timer.set(
        Expiration::OneShot(at),
        TimerSetTimeFlags::TFD_TIMER_ABSTIME | TimerSetTimeFlags::TFD_TIMER_CANCEL_ON_SET,
    )
}
