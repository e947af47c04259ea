//! FAT date and time stamps (fatgen103 §6 "Date and Time Formats").
//!
//! | field | bits  | meaning                                  |
//! |-------|-------|------------------------------------------|
//! | date  | 0-4   | day of month, 1..=31                     |
//! | date  | 5-8   | month, 1..=12                            |
//! | date  | 9-15  | years since 1980, 0..=127 (1980..=2107)  |
//! | time  | 0-4   | seconds / 2, 0..=29                      |
//! | time  | 5-10  | minutes, 0..=59                          |
//! | time  | 11-15 | hours, 0..=23                            |
//!
//! `DIR_CrtTimeTenth` adds 10 ms units (0..=199) to the creation time.
//! FAT stores local time without a zone; kiln writes UTC, which is what a
//! reproducible build can promise.

use kiln_tree::Timestamp;

/// 1980-01-01T00:00:00Z, the earliest FAT time, in Unix seconds.
pub const FAT_EPOCH_MIN_SECS: i64 = 315_532_800;
/// 2107-12-31T23:59:59Z, the latest FAT time, in Unix seconds.
pub const FAT_EPOCH_MAX_SECS: i64 = 4_354_819_199;

/// A timestamp in FAT encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FatTime {
    /// Date word (`DIR_WrtDate` layout).
    pub date: u16,
    /// Time word, 2-second resolution (`DIR_WrtTime` layout).
    pub time: u16,
    /// 10 ms units within the two seconds (`DIR_CrtTimeTenth`, 0..=199).
    pub tenths: u8,
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (the well-known "civil from days" conversion).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    // d is 1..=31 and m is 1..=12 by construction.
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

impl FatTime {
    /// Encodes `t` (UTC), clamped to the representable 1980..=2107 range.
    pub fn from_timestamp(t: Timestamp) -> Self {
        let (secs, nanos) = if t.secs < FAT_EPOCH_MIN_SECS {
            (FAT_EPOCH_MIN_SECS, 0)
        } else if t.secs > FAT_EPOCH_MAX_SECS {
            (FAT_EPOCH_MAX_SECS, 999_999_999)
        } else {
            (t.secs, t.nanos.min(999_999_999))
        };
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let hour = sod / 3600;
        let min = (sod / 60) % 60;
        let sec = sod % 60;
        // All of these are small and in range after the clamp above.
        let year = u16::try_from(y - 1980).unwrap_or(0);
        let date = (year << 9) | ((m as u16) << 5) | d as u16;
        let time = (u16::try_from(hour).unwrap_or(0) << 11)
            | (u16::try_from(min).unwrap_or(0) << 5)
            | u16::try_from(sec / 2).unwrap_or(0);
        let tenths = u8::try_from((sec % 2) * 100 + i64::from(nanos / 10_000_000)).unwrap_or(0);
        Self { date, time, tenths }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(secs: i64, nanos: u32) -> (u16, u16, u8) {
        let t = FatTime::from_timestamp(Timestamp::new(secs, nanos));
        (t.date, t.time, t.tenths)
    }

    #[test]
    fn known_answers() {
        // 1980-01-01 00:00:00: year 0, month 1, day 1.
        assert_eq!(enc(FAT_EPOCH_MIN_SECS, 0), (0x0021, 0, 0));
        // Before 1980 clamps to the minimum.
        assert_eq!(enc(0, 0), (0x0021, 0, 0));
        assert_eq!(enc(-5, 0), (0x0021, 0, 0));
        // 2023-11-14T22:13:20Z (1700000000): year 43, month 11, day 14,
        // 22:13:20 -> seconds/2 = 10.
        assert_eq!(
            enc(1_700_000_000, 0),
            ((43 << 9) | (11 << 5) | 14, (22 << 11) | (13 << 5) | 10, 0)
        );
        // Odd second and 250 ms: tenths = 100 + 25.
        assert_eq!(enc(1_700_000_001, 250_000_000).2, 125);
        // 2000-02-29T12:00:00Z, leap day.
        assert_eq!(
            enc(951_825_600, 0),
            ((20 << 9) | (2 << 5) | 29, 12 << 11, 0)
        );
        // After 2107 clamps to 2107-12-31 23:59:58 (+1.99 s).
        assert_eq!(
            enc(i64::MAX, 0),
            (
                (127 << 9) | (12 << 5) | 31,
                (23 << 11) | (59 << 5) | 29,
                199
            )
        );
        assert_eq!(enc(FAT_EPOCH_MAX_SECS, 0).0, (127 << 9) | (12 << 5) | 31);
    }
}
