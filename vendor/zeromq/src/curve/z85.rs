//! zerowire patch: Z85 (ZeroMQ RFC 32), the text form libzmq uses for CURVE keys.
//!
//! An encoding, not a cipher: 4 bytes become 5 characters of an 85-letter alphabet. Kept here
//! rather than taken from a crate because it is this small and must match libzmq exactly,
//! including what it refuses (lengths that are not a multiple of 4 or 5, letters outside the
//! alphabet, groups above 2^32 - 1); the tests hold it to RFC 32's vector and to libzmq's keys.

const ALPHABET: &[u8; 85] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// Value of each ASCII letter in the alphabet, 0xff for letters outside it.
const DECODE: [u8; 128] = {
    let mut table = [0xffu8; 128];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Encodes `data`, whose length must be a multiple of 4.
pub fn encode(data: &[u8]) -> Option<String> {
    if !data.len().is_multiple_of(4) {
        return None;
    }
    let mut out = String::with_capacity(data.len() / 4 * 5);
    for chunk in data.chunks_exact(4) {
        let mut value = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let mut group = [0u8; 5];
        for slot in group.iter_mut().rev() {
            *slot = ALPHABET[(value % 85) as usize];
            value /= 85;
        }
        // Every byte comes from ALPHABET, which is ASCII.
        out.extend(group.iter().map(|&b| b as char));
    }
    Some(out)
}

/// Decodes `text`, whose length must be a multiple of 5.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(5) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 5 * 4);
    for group in text.chunks_exact(5) {
        let mut value: u64 = 0;
        for &letter in group {
            let digit = *DECODE.get(letter as usize)?;
            if digit == 0xff {
                return None;
            }
            value = value * 85 + u64::from(digit);
        }
        let value = u32::try_from(value).ok()?;
        out.extend_from_slice(&value.to_be_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc32_test_vector() {
        let bytes = [0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B];
        assert_eq!(encode(&bytes).unwrap(), "HelloWorld");
        assert_eq!(decode("HelloWorld").unwrap(), bytes);
    }

    #[test]
    fn libzmq_test_keys_round_trip() {
        // The server key pair from libzmq's tests/test_security_curve.cpp.
        let public = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
        let bytes = decode(public).unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(encode(&bytes).unwrap(), public);
    }

    #[test]
    fn every_value_round_trips() {
        let data: Vec<u8> = (0..=255u8).chain([0xff; 4]).collect();
        assert_eq!(decode(&encode(&data).unwrap()).unwrap(), data);
    }

    #[test]
    fn refuses_what_libzmq_refuses() {
        assert!(encode(&[1, 2, 3]).is_none());
        assert!(decode("Hello").is_some());
        assert!(decode("Hell").is_none());
        assert!(decode("Hell\"").is_none());
        assert!(decode("Hellé").is_none());
        // "%nSc1" is 2^32, one more than four bytes can hold.
        assert!(decode("%nSc1").is_none());
        assert_eq!(decode("%nSc0").unwrap(), [0xff; 4]);
    }
}
