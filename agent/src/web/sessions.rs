//! Login sessions and the brake on password guessing.
//!
//! A login gets a random session id, kept here with its expiry; the cookie carries only that
//! id, never the API token, and logout deletes it, so a cookie copied after logout is
//! worthless. Failed logins are counted per client address: after [`FREE_FAILURES`] in a
//! row the address must wait before its next attempt, twice as long after each further
//! failure (1 s, 2 s, 4 s, ... up to [`MAX_LOCKOUT`]); a right password resets it. Other
//! addresses are not affected. Time comes in as a parameter so the rules are unit-tested
//! without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng as _;

/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the one closest to expiry goes first.
const MAX_SESSIONS: usize = 1024;
/// Failed logins from one address before it must wait.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait imposed on one address.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Addresses tracked at most (a flood from many addresses cannot grow memory without bound).
const MAX_ADDRESSES: usize = 4096;

/// Who is signed in: the installer (everything) or a reviewer (incidents and reviews).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Installer,
    Reviewer,
}

#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, (Instant, Account)>>,
}

impl Sessions {
    /// A new session of `account` valid until `now + SESSION_TTL`; returns its id (64 hex
    /// digits).
    pub fn create(&self, now: Instant, account: Account) -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill(&mut bytes);
        let id = hex::encode(bytes);
        if let Ok(mut sessions) = self.by_id.lock() {
            sessions.retain(|_, (expires, _)| *expires > now);
            if sessions.len() >= MAX_SESSIONS
                && let Some(oldest) = sessions
                    .iter()
                    .min_by_key(|(_, (expires, _))| *expires)
                    .map(|(id, _)| id.clone())
            {
                sessions.remove(&oldest);
            }
            sessions.insert(id.clone(), (now + SESSION_TTL, account));
        }
        id
    }

    /// The account of `id` if it is a session that has not expired or been logged out.
    pub fn account(&self, id: &str, now: Instant) -> Option<Account> {
        let sessions = self.by_id.lock().ok()?;
        let (expires, account) = sessions.get(id)?;
        (*expires > now).then(|| account.clone())
    }

    /// Logout: the id is no longer accepted.
    pub fn remove(&self, id: &str) {
        if let Ok(mut sessions) = self.by_id.lock() {
            sessions.remove(id);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// No attempt from the address is looked at before this.
    locked_until: Option<Instant>,
    last: Instant,
}

/// What the limiter says about a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Allowed,
    /// Too many failures: try again after this long.
    Wait(Duration),
}

#[derive(Default)]
pub struct LoginLimiter {
    by_address: Mutex<HashMap<IpAddr, Failures>>,
}

impl LoginLimiter {
    /// May `address` try a password now?
    pub fn check(&self, address: IpAddr, now: Instant) -> Attempt {
        let Ok(map) = self.by_address.lock() else {
            return Attempt::Allowed;
        };
        match map.get(&address).and_then(|f| f.locked_until) {
            Some(until) if until > now => Attempt::Wait(until - now),
            _ => Attempt::Allowed,
        }
    }

    /// A wrong password from `address`; returns the wait now imposed on it, if any.
    pub fn failed(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let Ok(mut map) = self.by_address.lock() else {
            return None;
        };
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&address) {
            // Forget addresses quiet for the longest (an hour of silence clears them anyway).
            map.retain(|_, f| now.duration_since(f.last) < Duration::from_secs(3600));
            if map.len() >= MAX_ADDRESSES
                && let Some(oldest) = map.iter().min_by_key(|(_, f)| f.last).map(|(a, _)| *a)
            {
                map.remove(&oldest);
            }
        }
        let entry = map.entry(address).or_insert(Failures {
            count: 0,
            locked_until: None,
            last: now,
        });
        // An hour without a failure starts the count again.
        if now.duration_since(entry.last) >= Duration::from_secs(3600) {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
        let wait = lockout_after(entry.count);
        entry.locked_until = wait.map(|w| now + w);
        wait
    }

    /// A right password: the address starts clean.
    pub fn succeeded(&self, address: IpAddr) {
        if let Ok(mut map) = self.by_address.lock() {
            map.remove(&address);
        }
    }
}

/// The wait after the `failures`-th failure in a row: none for the first [`FREE_FAILURES`],
/// then 1 s, doubling, at most [`MAX_LOCKOUT`].
pub fn lockout_after(failures: u32) -> Option<Duration> {
    let beyond = failures.checked_sub(FREE_FAILURES)?;
    if beyond == 0 {
        return None;
    }
    let seconds = 1u64.checked_shl(beyond - 1).unwrap_or(u64::MAX);
    Some(Duration::from_secs(seconds).min(MAX_LOCKOUT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_random_expire_and_end_at_logout() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let staff = Account {
            name: "王芳".into(),
            role: Role::Reviewer,
        };
        let a = sessions.create(t0, staff.clone());
        let b = sessions.create(t0, staff.clone());
        assert_eq!(sessions.account(&b, t0), Some(staff));
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(sessions.account(&a, t0 + Duration::from_secs(60)).is_some());
        assert!(
            sessions
                .account(&a, t0 + SESSION_TTL + Duration::from_secs(1))
                .is_none()
        );
        sessions.remove(&a);
        assert!(sessions.account(&a, t0).is_none());
        assert!(sessions.account(&b, t0).is_some());
        assert!(sessions.account("guess", t0).is_none());
    }

    #[test]
    fn failures_from_one_address_wait_longer_and_longer() {
        assert_eq!(lockout_after(1), None);
        assert_eq!(lockout_after(FREE_FAILURES), None);
        assert_eq!(
            lockout_after(FREE_FAILURES + 1),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            lockout_after(FREE_FAILURES + 2),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            lockout_after(FREE_FAILURES + 5),
            Some(Duration::from_secs(16))
        );
        assert_eq!(lockout_after(200), Some(MAX_LOCKOUT));
        let limiter = LoginLimiter::default();
        let guesser: IpAddr = "127.0.0.1".parse().unwrap();
        let staff: IpAddr = "127.0.0.2".parse().unwrap();
        let mut now = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert_eq!(limiter.check(guesser, now), Attempt::Allowed);
            assert_eq!(limiter.failed(guesser, now), None);
        }
        assert_eq!(limiter.failed(guesser, now), Some(Duration::from_secs(1)));
        assert_eq!(
            limiter.check(guesser, now),
            Attempt::Wait(Duration::from_secs(1))
        );
        assert_eq!(
            limiter.check(staff, now),
            Attempt::Allowed,
            "others unaffected"
        );
        now += Duration::from_secs(1);
        assert_eq!(limiter.check(guesser, now), Attempt::Allowed);
        assert_eq!(limiter.failed(guesser, now), Some(Duration::from_secs(2)));
        limiter.succeeded(guesser);
        assert_eq!(limiter.check(guesser, now), Attempt::Allowed);
        assert_eq!(limiter.failed(guesser, now), None, "a success starts clean");
    }
}
