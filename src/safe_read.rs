//! Reading files a user hands us, which may be hostile: only regular files (a named pipe
//! or a device is refused without blocking), never more than the file's size, and for
//! safetensors files a header checked before the data is read (length within the file and
//! a limit, every name once, every shape countable) so that a malformed file is a short
//! message, not an allocation of the header's claimed size or a libtorch exception.
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The largest safetensors header read, as the `safetensors` crate itself limits it.
pub(crate) const HEADER_LIMIT: u64 = 100_000_000;
/// The largest JSON side file read (`adapter.json`, `adapter_config.json`).
pub(crate) const JSON_LIMIT: u64 = 16 << 20;

/// Linux's `O_NONBLOCK`: opening a named pipe then returns at once instead of waiting for
/// a writer; it changes nothing for a regular file's reads.
const O_NONBLOCK: i32 = 0o4000;

/// Opens `path` (following symbolic links) and checks it is a regular file: its handle
/// and size.
pub(crate) fn open_regular(path: &Path) -> Result<(File, u64), String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
        .map_err(|error| error.to_string())?;
    let metadata = file.metadata().map_err(|error| error.to_string())?;
    let kind = metadata.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a folder"
        } else if std::os::unix::fs::FileTypeExt::is_fifo(&kind) {
            "a named pipe"
        } else if std::os::unix::fs::FileTypeExt::is_char_device(&kind)
            || std::os::unix::fs::FileTypeExt::is_block_device(&kind)
        {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(format!("it is {what}; only regular files are read"));
    }
    Ok((file, metadata.len()))
}

/// Reads exactly `len` bytes from `file`; an error if it holds fewer (it shrank while
/// being read).
fn read_exact_len(file: &mut File, len: u64) -> Result<Vec<u8>, String> {
    let len = usize::try_from(len).map_err(|_| "it is too large to read".to_owned())?;
    let mut bytes = vec![0; len];
    file.read_exact(&mut bytes)
        .map_err(|error| format!("it could not be read whole: {error}"))?;
    Ok(bytes)
}

/// The bytes of the regular file `path`, at most `limit` of them.
pub(crate) fn read_regular_file(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let (mut file, len) = open_regular(path)?;
    if len > limit {
        return Err(format!(
            "it holds {len} bytes, more than the {limit} read for such a file"
        ));
    }
    read_exact_len(&mut file, len)
}

/// The bytes of the safetensors file `path`, its header length checked against the file's
/// size and [`HEADER_LIMIT`] before the rest is read (the header itself is checked where
/// the bytes are parsed, by [`check_header`]). The file is read once, into one buffer.
pub(crate) fn read_safetensors_file(path: &Path) -> Result<Vec<u8>, String> {
    let (mut file, len) = open_regular(path)?;
    let mut prefix = [0u8; 8];
    if len < 8 || file.read_exact(&mut prefix).is_err() {
        return Err("not a safetensors file: shorter than its 8-byte header length".into());
    }
    header_length(u64::from_le_bytes(prefix), len)?;
    let len = usize::try_from(len).map_err(|_| "it is too large to read".to_owned())?;
    let mut bytes = vec![0; len];
    bytes[..8].copy_from_slice(&prefix);
    file.read_exact(&mut bytes[8..])
        .map_err(|error| format!("it could not be read whole: {error}"))?;
    Ok(bytes)
}

/// Checks a header length against the file's size and [`HEADER_LIMIT`].
pub(crate) fn header_length(header: u64, file_len: u64) -> Result<usize, String> {
    if header > HEADER_LIMIT {
        return Err(format!(
            "not a safetensors file: its header length {header} is past the {HEADER_LIMIT}-byte limit"
        ));
    }
    if header > file_len.saturating_sub(8) {
        return Err(format!(
            "not a safetensors file: its header length {header} runs past the end of the file ({file_len} bytes)"
        ));
    }
    Ok(header as usize)
}

/// Checks what the `safetensors` crate does not, before it parses `bytes`: a header
/// length within the bytes and the limit; a JSON object naming each tensor once (JSON
/// readers keep the last of two equal keys, silently); shapes whose element count fits
/// in an `i64` (libtorch's), whatever zeros they hold. Offsets, byte lengths and dtypes
/// are the crate's to check.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), String> {
    let Some(prefix) = bytes.get(..8) else {
        return Err("not a safetensors file: shorter than its 8-byte header length".into());
    };
    let header = u64::from_le_bytes(prefix.try_into().expect("8 bytes"));
    let header = header_length(header, bytes.len() as u64)?;
    check_header_json(&bytes[8..8 + header])
}

/// [`check_header`]'s checks of the header's JSON text alone (names once, countable
/// shapes), for a reader that has read the header but not the data.
pub(crate) fn check_header_json(json: &[u8]) -> Result<(), String> {
    let header: Header = serde_json::from_slice(json).map_err(|error| {
        let text = error.to_string();
        format!("not a safetensors file: its header is not valid: {text}")
    })?;
    if let Some(name) = header.duplicate {
        return Err(format!("its header names tensor {name:?} twice"));
    }
    if let Some(name) = header.uncountable {
        return Err(format!(
            "the shape of tensor {name:?} has more elements than libtorch can count"
        ));
    }
    Ok(())
}

/// What [`check_header`] finds in a header: the first name given twice, the first tensor
/// whose shape cannot be counted.
struct Header {
    duplicate: Option<String>,
    uncountable: Option<String>,
}

/// The part of a tensor's entry checked here.
#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    shape: Vec<u64>,
}

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Header;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
                let mut seen = std::collections::HashSet::new();
                let mut header = Header {
                    duplicate: None,
                    uncountable: None,
                };
                while let Some(name) = map.next_key::<String>()? {
                    if !seen.insert(name.clone()) && header.duplicate.is_none() {
                        header.duplicate = Some(name.clone());
                    }
                    if name == "__metadata__" {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    let entry: Entry = map.next_value()?;
                    if !countable(&entry.shape) && header.uncountable.is_none() {
                        header.uncountable = Some(name);
                    }
                }
                Ok(header)
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// Whether libtorch can hold a tensor of `shape`: every dimension and the product of the
/// non-zero ones within `i64`.
fn countable(shape: &[u64]) -> bool {
    let mut count: i64 = 1;
    for &dim in shape {
        let Ok(dim) = i64::try_from(dim) else {
            return false;
        };
        if dim != 0 {
            match count.checked_mul(dim) {
                Some(product) => count = product,
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: usize) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend(std::iter::repeat_n(0u8, data));
        bytes
    }

    #[test]
    fn a_name_given_twice_is_refused_by_name() {
        let header = r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}"#;
        let error = check_header(&file(header, 4)).unwrap_err();
        assert_eq!(error, "its header names tensor \"w\" twice");
    }

    #[test]
    fn header_lengths_past_the_file_or_the_limit_are_refused_before_parsing() {
        let mut bytes = file("{}", 0);
        bytes[..8].copy_from_slice(&1000u64.to_le_bytes());
        assert!(check_header(&bytes)
            .unwrap_err()
            .contains("runs past the end"));
        bytes[..8].copy_from_slice(&(HEADER_LIMIT + 1).to_le_bytes());
        assert!(check_header(&bytes).unwrap_err().contains("limit"));
        assert!(check_header(&[1, 2]).unwrap_err().contains("shorter"));
    }

    #[test]
    fn shapes_libtorch_cannot_count_are_refused_even_with_a_zero() {
        let huge = 1u64 << 62;
        let header =
            format!(r#"{{"w":{{"dtype":"F32","shape":[0,{huge},{huge}],"data_offsets":[0,0]}}}}"#);
        let error = check_header(&file(&header, 0)).unwrap_err();
        assert!(
            error.contains("\"w\"") && error.contains("count"),
            "{error}"
        );
        let fine = r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]}}"#;
        check_header(&file(fine, 0)).unwrap();
    }

    #[test]
    fn pipes_devices_and_folders_are_refused_without_blocking() {
        for (path, what) in [("/dev/zero", "a device"), ("/tmp", "a folder")] {
            let error = read_regular_file(Path::new(path), JSON_LIMIT).unwrap_err();
            assert!(error.contains(what), "{path}: {error}");
        }
        let fifo = std::env::temp_dir().join(format!("tch-patch-fifo-{}", std::process::id()));
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo {}", fifo.display());
        let error = read_safetensors_file(&fifo).unwrap_err();
        assert!(error.contains("a named pipe"), "{error}");
        std::fs::remove_file(&fifo).unwrap();
    }

    #[test]
    fn a_file_larger_than_the_limit_is_refused_unread() {
        let path = std::env::temp_dir().join(format!("tch-patch-big-{}", std::process::id()));
        std::fs::write(&path, vec![b' '; 100]).unwrap();
        let error = read_regular_file(&path, 10).unwrap_err();
        assert!(error.contains("100 bytes"), "{error}");
        std::fs::remove_file(&path).unwrap();
    }
}
