//! Crockford base32: digits and capitals without I, L, O and U, read back
//! case-blind with I and L as 1 and O as 0, so that text a person copies
//! or types by hand (the paper key, capabilities) survives the usual
//! slips. Pure; no padding, most significant bits first.

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// `bytes` as base32 digits (capitals), 8 digits per 5 bytes, the last
/// digit padded with zero bits.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The value of one typed digit (case-blind; I, L read as 1, O as 0).
pub fn digit(c: char) -> Option<u32> {
    let c = match c.to_ascii_uppercase() {
        'I' | 'L' => '1',
        'O' => '0',
        c => c,
    };
    ALPHABET
        .iter()
        .position(|&a| a as char == c)
        .map(|p| p as u32)
}

/// The first `len` bytes that `text` encodes, or the first character
/// that is not a digit.
pub fn decode(text: &str, len: usize) -> Result<Vec<u8>, char> {
    let mut out = Vec::with_capacity(len);
    let (mut acc, mut bits) = (0u32, 0);
    for ch in text.chars() {
        let d = digit(ch).ok_or(ch)?;
        acc = (acc << 5) | d;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_typing_slips() {
        for n in 0..40 {
            let bytes: Vec<u8> = (0..n as u8).map(|b| b.wrapping_mul(37)).collect();
            let text = encode(&bytes);
            assert_eq!(decode(&text, bytes.len()).unwrap(), bytes);
            let slipped = text.to_lowercase().replace('1', "l").replace('0', "o");
            assert_eq!(decode(&slipped, bytes.len()).unwrap(), bytes);
        }
        assert_eq!(encode(b"\xff\x00"), "ZW00");
        assert_eq!(decode("ZU", 1), Err('U'));
    }
}
