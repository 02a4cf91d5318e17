//! The key file on paper: short lines a person can type back in, each
//! with a checksum that catches a typo in that line and says which line.
//!
//! ```text
//! eventi paper key v1
//! 01: 0G4Y2 ... 24 base32 digits in groups ... : K3M
//! ...
//! total: 253 bytes, checksum 8NW4ZQ2T
//! ```
//!
//! Each numbered line holds 15 bytes of [`keyfile::to_binary`]'s form (the
//! last fewer) as Crockford base32 (digits and capitals without I, L, O,
//! U; typing is case-blind, and I, L read as 1, O as 0), then 3 digits of
//! SHA-256 over "eventi paper line v1\n", the line number and its bytes.
//! The total line checks the whole. The text stays sealed: it is useless
//! without the passphrase. Pinned in `docs/FORMAT.md`.

use sha2::{Digest, Sha256};

use super::keyfile;
use crate::format::base32::{self, digit};

const HEADER: &str = "eventi paper key v1";
const BYTES_PER_LINE: usize = 15;

/// Why typed-back paper text is not a key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PaperError {
    /// A line's checksum does not match: a typo in it.
    #[error("line {0}: the checksum does not match; check this line for a typo")]
    LineChecksum(usize),
    /// A character that is not a base32 digit.
    #[error("line {line}: {ch:?} is not a digit of the paper key")]
    BadCharacter {
        /// The line number.
        line: usize,
        /// What was typed.
        ch: char,
    },
    /// A line that is not `NN: digits : check`.
    #[error("line {0:?} is not a line of a paper key")]
    Malformed(String),
    /// Lines out of order, repeated or left out.
    #[error("line {0} is missing")]
    Missing(usize),
    /// Every line checks, but the whole does not.
    #[error("the total checksum does not match (a line left out, or one too many)")]
    Total,
    /// No `total:` line.
    #[error("the paper key has no `total:` line")]
    NoTotal,
    /// The bytes are not an exported key file.
    #[error("{0}")]
    Key(String),
}

fn encode32(bytes: &[u8]) -> String {
    base32::encode(bytes)
}

fn decode32(text: &str, len: usize, line: usize) -> Result<Vec<u8>, PaperError> {
    base32::decode(text, len).map_err(|ch| PaperError::BadCharacter { line, ch })
}

fn line_check(number: usize, bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"eventi paper line v1\n");
    h.update((number as u32).to_be_bytes());
    h.update(bytes);
    encode32(&h.finalize()[..2])[..3].to_string()
}

fn total_check(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"eventi paper total v1\n");
    h.update(bytes);
    encode32(&h.finalize()[..5])
}

/// The paper form of key file `text`.
pub fn export(text: &str, name: &str) -> Result<String, keyfile::KeyFileError> {
    let bytes = keyfile::to_binary(text, name)?;
    let mut out = format!("{HEADER}\n");
    for (i, chunk) in bytes.chunks(BYTES_PER_LINE).enumerate() {
        let digits = encode32(chunk);
        let groups: Vec<&str> = digits
            .as_bytes()
            .chunks(4)
            .map(|g| std::str::from_utf8(g).expect("ascii"))
            .collect();
        out += &format!(
            "{:02}: {} : {}\n",
            i + 1,
            groups.join(" "),
            line_check(i + 1, chunk)
        );
    }
    out += &format!(
        "total: {} bytes, checksum {}\n",
        bytes.len(),
        total_check(&bytes)
    );
    Ok(out)
}

/// Key file text from typed-back paper text. Blank lines, the header and
/// spacing do not matter; each line's checksum is checked on its own.
pub fn import(paper: &str) -> Result<String, PaperError> {
    let mut bytes = Vec::new();
    let mut next = 1;
    let mut total: Option<(usize, String)> = None;
    for raw in paper.lines() {
        let line = raw.trim();
        if line.is_empty() || line.eq_ignore_ascii_case(HEADER) {
            continue;
        }
        let malformed = || PaperError::Malformed(line.to_string());
        if let Some(rest) = line.strip_prefix("total:") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let len = words
                .first()
                .and_then(|w| w.parse().ok())
                .ok_or_else(malformed)?;
            let sum = words.last().ok_or_else(malformed)?.to_ascii_uppercase();
            total = Some((len, sum));
            continue;
        }
        let (number, rest) = line.split_once(':').ok_or_else(malformed)?;
        let number: usize = number.trim().parse().map_err(|_| malformed())?;
        let (digits, check) = rest.rsplit_once(':').ok_or_else(malformed)?;
        if number != next {
            return Err(PaperError::Missing(next));
        }
        let digits: String = digits.split_whitespace().collect();
        let len = digits.len() * 5 / 8;
        let chunk = decode32(&digits, len, number)?;
        let typed: String = check.split_whitespace().collect();
        let check_digits: Option<Vec<u32>> = typed.chars().map(digit).collect();
        let want: Vec<u32> = line_check(number, &chunk)
            .chars()
            .filter_map(digit)
            .collect();
        if check_digits.as_deref() != Some(&want[..]) {
            return Err(PaperError::LineChecksum(number));
        }
        bytes.extend_from_slice(&chunk);
        next += 1;
    }
    let (len, sum) = total.ok_or(PaperError::NoTotal)?;
    let sum_digits: Option<Vec<u32>> = sum.chars().map(digit).collect();
    let want: Vec<u32> = total_check(&bytes).chars().filter_map(digit).collect();
    if len != bytes.len() || sum_digits.as_deref() != Some(&want[..]) {
        return Err(PaperError::Total);
    }
    keyfile::from_binary(&bytes, "the paper key").map_err(|e| PaperError::Key(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::keyfile::{open, seal, Secrets};

    #[test]
    fn a_paper_key_types_back_and_a_typo_names_its_line() {
        let secrets = Secrets::generate(None);
        let text = seal(&secrets, b"pass");
        let paper = export(&text, "key").unwrap();
        assert!(paper.starts_with("eventi paper key v1\n"), "{paper}");
        assert!(paper.lines().all(|l| l.len() <= 50), "short lines: {paper}");
        let back = import(&paper).unwrap();
        let opened = open(&back, b"pass", "back").unwrap();
        assert_eq!(opened.write_key_public(), secrets.write_key_public());

        // Lowercase and extra spaces are fine.
        assert!(import(&paper.to_lowercase().replace(": ", ":   ")).is_ok());
        // One character changed in line 3.
        let mut lines: Vec<String> = paper.lines().map(str::to_string).collect();
        let line3 = lines[3].clone();
        let pos = line3.find(": ").unwrap() + 2;
        let old = line3.as_bytes()[pos] as char;
        let new = if old == 'A' { 'B' } else { 'A' };
        lines[3] = format!("{}{new}{}", &line3[..pos], &line3[pos + 1..]);
        assert_eq!(import(&lines.join("\n")), Err(PaperError::LineChecksum(3)));
        // A line left out.
        let mut short: Vec<String> = paper.lines().map(str::to_string).collect();
        short.remove(2);
        assert_eq!(import(&short.join("\n")), Err(PaperError::Missing(2)));
        // A 'U' is no digit.
        let bad = paper.replacen("01: ", "01: U", 1);
        assert!(matches!(
            import(&bad),
            Err(PaperError::BadCharacter { line: 1, ch: 'U' })
        ));
    }
}
