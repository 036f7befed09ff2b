//! base64url without padding (RFC 4648 §5), the encoding of a link's JSON in its fragment.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding (RFC 4648 §5).
pub fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The bytes of base64url text without padding; an error names the first bad character.
pub fn unbase64url(text: &str) -> std::result::Result<Vec<u8>, String> {
    if text.len() % 4 == 1 {
        return Err(format!("its text has {} characters, which no base64url text has", text.len()));
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    for chunk in text.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let Some(d) = ALPHABET.iter().position(|&a| a == c) else {
                let bad = text[..].chars().find(|ch| !ch.is_ascii() || !ALPHABET.contains(&(*ch as u8))).unwrap_or('?');
                return Err(format!("{bad:?} is not a base64url character"));
            };
            n |= (d as u32) << (18 - 6 * i);
        }
        out.extend((0..chunk.len() - 1).map(|i| (n >> (16 - 8 * i)) as u8));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_rfc_4648_and_round_trips() {
        // RFC 4648 §10's vectors, without padding
        for (plain, coded) in
            [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE")]
        {
            assert_eq!(base64url(plain.as_bytes()), coded);
            assert_eq!(unbase64url(coded).unwrap(), plain.as_bytes());
        }
        // the URL-safe letters for 62 and 63
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        let bytes: Vec<u8> = (0..=255u8).rev().collect();
        for n in 0..bytes.len() {
            assert_eq!(unbase64url(&base64url(&bytes[..n])).unwrap(), &bytes[..n], "{n} bytes");
        }
        assert!(unbase64url("Zm9vY").unwrap_err().contains("5 characters"));
        assert!(unbase64url("Zm9=").unwrap_err().contains("'='"));
        assert!(unbase64url("Zm+v").unwrap_err().contains("'+'"));
    }
}
