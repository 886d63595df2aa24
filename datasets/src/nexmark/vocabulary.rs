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

/// Longest channel name, padded (`channel-9999` has 12 bytes).
const NAME_SLOT: usize = 16;
/// Longest channel URL, padded (the longest URL has 80 bytes).
const URL_SLOT: usize = 96;

/// Channel names and URLs, each in a fixed-size zero-padded slot so that
/// copying one into a column is a fixed-size (inlined) copy followed by a
/// truncation, instead of a `memcpy` call per value (a few % of bid
/// generation). The hot channels come first, then
/// `channel-0` … `channel-9999`.
#[derive(Debug)]
pub(crate) struct ChannelTable {
    names: Vec<([u8; NAME_SLOT], u8)>,
    urls: Vec<([u8; URL_SLOT], u8)>,
}

impl ChannelTable {
    /// The table for `seed`; URL paths are random words drawn from the seed.
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = SplitMix64::new(stream_key(seed, CHANNEL_STREAM));
        let count = HOT_CHANNELS.len() + OTHER_CHANNELS as usize;
        let mut table = Self {
            names: Vec::with_capacity(count),
            urls: Vec::with_capacity(count),
        };
        let mut name = Vec::with_capacity(NAME_SLOT);
        for hot in HOT_CHANNELS {
            name.clear();
            name.extend_from_slice(hot.as_bytes());
            table.push_entry(&mut rng, &name, None);
        }
        for k in 0..OTHER_CHANNELS {
            name.clear();
            name.extend_from_slice(b"channel-");
            push_decimal(&mut name, k);
            table.push_entry(&mut rng, &name, Some(mix64(k ^ seed) >> 33));
        }
        table
    }

    fn push_entry(&mut self, rng: &mut SplitMix64, name: &[u8], channel_id: Option<u64>) {
        let mut url = Vec::with_capacity(URL_SLOT);
        url.extend_from_slice(b"https://www.nexmark.com/");
        for _ in 0..3 {
            for _ in 0..5 {
                url.push(b'a' + rng.next_below(26) as u8);
            }
            url.push(b'/');
        }
        url.extend_from_slice(b"item.htm?query=1");
        if let Some(id) = channel_id {
            url.extend_from_slice(b"&channel_id=");
            push_decimal(&mut url, id);
        }
        self.names.push(padded(name));
        self.urls.push(padded(&url));
    }

    /// Appends the name of entry `i` to `name` and its URL to `url`.
    #[inline(always)]
    pub(crate) fn push(&self, i: usize, name: &mut Vec<u8>, url: &mut Vec<u8>) {
        push_padded(name, &self.names[i]);
        push_padded(url, &self.urls[i]);
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

/// `value` in a zero-padded slot of `N` bytes, with its length.
fn padded<const N: usize>(value: &[u8]) -> ([u8; N], u8) {
    let mut slot = [0; N];
    let len = value.len().min(N);
    slot[..len].copy_from_slice(&value[..len]);
    (slot, len as u8)
}

/// Appends the first `len` bytes of a padded slot.
#[inline(always)]
fn push_padded<const N: usize>(buf: &mut Vec<u8>, (slot, len): &([u8; N], u8)) {
    let end = buf.len() + usize::from(*len);
    buf.extend_from_slice(slot);
    buf.truncate(end);
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
    // Fork: the padding may need more draws than an event's slot holds.
    push_text(buf, &mut rng.fork(), len as usize);
}

/// A Nexmark price in cents: `round(10^(6u) * 100)` for uniform `u`, so
/// prices spread log-uniformly over 1.00 … 1 000 000.00.
#[inline(always)]
pub(crate) fn next_price(rng: &mut SplitMix64) -> i64 {
    // `+ 0.5` and truncation rounds the (positive) value; `f64::round` is a
    // libm call on baseline x86-64 and cost 8 % of bid generation.
    (pow10(rng.next_f64() * 6.0) * 100.0 + 0.5) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_table_entries() {
        let table = ChannelTable::new(1);
        let (mut name, mut url) = (Vec::new(), Vec::new());
        table.push(0, &mut name, &mut url);
        assert_eq!(name, b"Google");
        assert!(url.starts_with(b"https://www.nexmark.com/"));
        assert!(url.ends_with(b"item.htm?query=1"));
        let (mut name, mut url) = (b"x".to_vec(), Vec::new());
        table.push(HOT_CHANNELS.len() + 9999, &mut name, &mut url);
        assert_eq!(name, b"xchannel-9999");
        assert!(url.windows(12).any(|w| w == b"&channel_id="));
        assert!(
            table
                .urls
                .iter()
                .all(|(_, len)| usize::from(*len) < URL_SLOT)
        );
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
