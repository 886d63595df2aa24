//! The text of Nexmark events: fixed word lists, bid channels with their
//! URLs, random lowercase strings and the price distribution.
//!
//! Everything is written straight into a column's byte buffer; nothing here
//! allocates per value.

use crate::random::{SplitMix64, mix64, pow10, stream_key};

/// First names of people.
pub(crate) const FIRST_NAMES: &[&str] = &[
    "Alma", "Bruno", "Chiara", "Dmitri", "Esther", "Farid", "Greta", "Hugo", "Ines", "Jonas",
    "Keiko", "Lars", "Mira", "Nadia", "Oskar", "Priya",
];

/// Last names of people.
pub(crate) const LAST_NAMES: &[&str] = &[
    "Albers",
    "Brandt",
    "Castillo",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Gallo",
    "Haddad",
    "Ivanova",
    "Jansen",
    "Kowalski",
    "Lindqvist",
];

/// Cities of people (US, as in Nexmark).
pub(crate) const CITIES: &[&str] = &[
    "Phoenix",
    "Tucson",
    "Sacramento",
    "Fresno",
    "Boise",
    "Eugene",
    "Salem",
    "Spokane",
    "Tacoma",
    "Laramie",
];

/// States of people (US postal codes).
pub(crate) const STATES: &[&str] = &["AZ", "CA", "ID", "OR", "WA", "WY"];

/// The channels half of all bids come through.
pub(crate) const HOT_CHANNELS: &[&str] = &["Google", "Facebook", "Baidu", "Apple"];

/// Number of other (`channel-<k>`) channels.
pub(crate) const OTHER_CHANNELS: u64 = 10_000;

/// One in `HOT_CHANNEL_RATIO` bids uses a random other channel.
pub(crate) const HOT_CHANNEL_RATIO: u64 = 2;

/// 27 symbols for random text: letters and a space.
const TEXT_ALPHABET: &[u8; 27] = b"abcdefghijklmnopqrstuvwxyz ";

/// Stream tag of the channel table randomness.
const CHANNEL_STREAM: u64 = 0x6368_616e_6e65_6c73;

/// Channel names and URLs, stored back to back in one buffer; the hot
/// channels come first, then `channel-0` … `channel-9999`.
#[derive(Debug)]
pub(crate) struct ChannelTable {
    bytes: Vec<u8>,
    /// For entry `i`: start of the name, end of the name = start of the URL, end of the URL.
    bounds: Vec<(u32, u32, u32)>,
}

impl ChannelTable {
    /// The table for `seed`; URL paths are random words drawn from the seed.
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = SplitMix64::new(stream_key(seed, CHANNEL_STREAM));
        let count = HOT_CHANNELS.len() + OTHER_CHANNELS as usize;
        let mut table = Self {
            bytes: Vec::with_capacity(count * 80),
            bounds: Vec::with_capacity(count),
        };
        for name in HOT_CHANNELS {
            table.push_entry(&mut rng, |buf| buf.extend_from_slice(name.as_bytes()), None);
        }
        for k in 0..OTHER_CHANNELS {
            let id = mix64(k ^ seed) >> 33;
            table.push_entry(
                &mut rng,
                |buf| {
                    buf.extend_from_slice(b"channel-");
                    push_decimal(buf, k);
                },
                Some(id),
            );
        }
        table
    }

    fn push_entry(
        &mut self,
        rng: &mut SplitMix64,
        name: impl FnOnce(&mut Vec<u8>),
        channel_id: Option<u64>,
    ) {
        let start = self.bytes.len() as u32;
        name(&mut self.bytes);
        let name_end = self.bytes.len() as u32;
        self.bytes.extend_from_slice(b"https://www.nexmark.com/");
        for _ in 0..3 {
            for _ in 0..5 {
                let letter = rng.next_below(26) as u8;
                self.bytes.push(b'a' + letter);
            }
            self.bytes.push(b'/');
        }
        self.bytes.extend_from_slice(b"item.htm?query=1");
        if let Some(id) = channel_id {
            self.bytes.extend_from_slice(b"&channel_id=");
            push_decimal(&mut self.bytes, id);
        }
        self.bounds.push((start, name_end, self.bytes.len() as u32));
    }

    /// Name and URL of entry `i` (`i < HOT_CHANNELS.len() + OTHER_CHANNELS`).
    #[inline(always)]
    pub(crate) fn entry(&self, i: usize) -> (&[u8], &[u8]) {
        let (start, mid, end) = self.bounds[i];
        (
            &self.bytes[start as usize..mid as usize],
            &self.bytes[mid as usize..end as usize],
        )
    }

    /// Picks the channel of a bid: a hot one with probability `1 - 1/HOT_CHANNEL_RATIO`.
    #[inline(always)]
    pub(crate) fn pick(rng: &mut SplitMix64) -> usize {
        if rng.next_below(HOT_CHANNEL_RATIO) > 0 {
            rng.next_below(HOT_CHANNELS.len() as u64) as usize
        } else {
            HOT_CHANNELS.len() + rng.next_below(OTHER_CHANNELS) as usize
        }
    }
}

/// Appends the decimal digits of `value`.
pub(crate) fn push_decimal(buf: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Appends `len` random symbols of letters and spaces (eight per random draw).
#[inline]
pub(crate) fn push_text(buf: &mut Vec<u8>, rng: &mut SplitMix64, len: usize) {
    push_symbols(buf, rng, len, TEXT_ALPHABET.len() as u32);
}

/// Appends `len` random lowercase letters.
#[inline]
pub(crate) fn push_letters(buf: &mut Vec<u8>, rng: &mut SplitMix64, len: usize) {
    push_symbols(buf, rng, len, 26);
}

#[inline(always)]
fn push_symbols(buf: &mut Vec<u8>, rng: &mut SplitMix64, len: usize, alphabet: u32) {
    let mut left = len;
    while left > 0 {
        let bits = rng.next_u64().to_le_bytes();
        let take = left.min(8);
        for &b in &bits[..take] {
            // Maps a byte onto the alphabet with a bias below 1/256.
            buf.push(TEXT_ALPHABET[((u32::from(b) * alphabet) >> 8) as usize]);
        }
        left -= take;
    }
}

/// Appends a random string of length `min_len..=max_len` (letters and spaces).
#[inline]
pub(crate) fn push_random_text(
    buf: &mut Vec<u8>,
    rng: &mut SplitMix64,
    min_len: usize,
    max_len: usize,
) {
    let len = min_len + rng.next_below((max_len - min_len + 1) as u64) as usize;
    push_text(buf, rng, len);
}

/// Appends the `extra` padding: empty when `avg_len` is 0, else a length
/// uniform in `avg_len ± 20 %`.
#[inline(always)]
pub(crate) fn push_extra(buf: &mut Vec<u8>, rng: &mut SplitMix64, avg_len: u32) {
    if avg_len == 0 {
        return;
    }
    let delta = u64::from(avg_len).div_ceil(5);
    let len = u64::from(avg_len) - delta + rng.next_below(2 * delta + 1);
    push_text(buf, rng, len as usize);
}

/// A Nexmark price in cents: `round(10^(6u) * 100)` for uniform `u`, so
/// prices spread log-uniformly over 1.00 … 1 000 000.00.
#[inline(always)]
pub(crate) fn next_price(rng: &mut SplitMix64) -> i64 {
    (pow10(rng.next_f64() * 6.0) * 100.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_table_entries() {
        let table = ChannelTable::new(1);
        let (name, url) = table.entry(0);
        assert_eq!(name, b"Google");
        assert!(url.starts_with(b"https://www.nexmark.com/"));
        assert!(url.ends_with(b"item.htm?query=1"));
        let (name, url) = table.entry(HOT_CHANNELS.len() + 42);
        assert_eq!(name, b"channel-42");
        assert!(url.windows(12).any(|w| w == b"&channel_id="));
    }

    #[test]
    fn prices_span_six_decades() {
        let mut rng = SplitMix64::new(5);
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for _ in 0..100_000 {
            let p = next_price(&mut rng);
            lo = lo.min(p);
            hi = hi.max(p);
        }
        assert!((100..200).contains(&lo), "{lo}");
        assert!(hi > 50_000_000 && hi <= 100_000_000, "{hi}");
    }

    #[test]
    fn extra_length_is_within_twenty_percent() {
        let mut rng = SplitMix64::new(2);
        for _ in 0..1000 {
            let mut buf = Vec::new();
            push_extra(&mut buf, &mut rng, 100);
            assert!((80..=120).contains(&buf.len()), "{}", buf.len());
        }
        let mut buf = Vec::new();
        push_extra(&mut buf, &mut rng, 0);
        assert!(buf.is_empty());
    }

    #[test]
    fn decimal_digits() {
        let mut buf = Vec::new();
        push_decimal(&mut buf, 0);
        buf.push(b' ');
        push_decimal(&mut buf, 9_876_543_210);
        assert_eq!(buf, b"0 9876543210");
    }
}
