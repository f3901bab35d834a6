//! Command messages (types 20 and 17): name, transaction id, command object, arguments.

use bytes::Bytes;

use super::amf0::{self, Amf0Error, Amf0Value};
use super::MSG_COMMAND_AMF3;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CommandError {
    #[error("command payload is not AMF: {0}")]
    Amf(#[from] Amf0Error),
    #[error("command has no name")]
    NoName,
}

/// AMF values (nested ones included) a command message may hold. A Flash Player connect
/// object has about a dozen; OBS's and ffmpeg's fewer.
pub const MAX_COMMAND_VALUES: usize = 512;

#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub transaction: f64,
    /// The command object, kept whole (connect's carries app, tcUrl, flashVer and more).
    pub object: Amf0Value,
    pub args: Vec<Amf0Value>,
}

impl Command {
    pub fn new(name: &str, transaction: f64, object: Amf0Value, args: Vec<Amf0Value>) -> Self {
        Command {
            name: name.to_string(),
            transaction,
            object,
            args,
        }
    }

    /// Decodes a command message. An AMF3 command (type 17) starts with a format byte and then
    /// carries AMF0 values (switching to AMF3 per value with the avmplus marker). At most
    /// [`MAX_COMMAND_VALUES`] values are decoded.
    pub fn decode(type_id: u8, payload: &[u8]) -> Result<Command, CommandError> {
        let body = if type_id == MSG_COMMAND_AMF3 && !payload.is_empty() {
            &payload[1..]
        } else {
            payload
        };
        let mut values = amf0::decode_all_limited(body, MAX_COMMAND_VALUES)?.into_iter();
        let name = match values.next() {
            Some(Amf0Value::String(s)) => s,
            _ => return Err(CommandError::NoName),
        };
        let transaction = values.next().and_then(|v| v.as_number()).unwrap_or(0.0);
        let object = values.next().unwrap_or(Amf0Value::Null);
        Ok(Command {
            name,
            transaction,
            object,
            args: values.collect(),
        })
    }

    /// Encodes as an AMF0 command payload (type 20).
    pub fn encode(&self) -> Bytes {
        let mut values = Vec::with_capacity(3 + self.args.len());
        values.push(Amf0Value::String(self.name.clone()));
        values.push(Amf0Value::Number(self.transaction));
        values.push(self.object.clone());
        values.extend(self.args.iter().cloned());
        amf0::encode_all(&values)
    }

    /// The first argument as a string (stream names in publish/play).
    pub fn arg_str(&self, i: usize) -> Option<&str> {
        self.args.get(i).and_then(|v| v.as_str())
    }

    pub fn arg_number(&self, i: usize) -> Option<f64> {
        self.args.get(i).and_then(|v| v.as_number())
    }
}

/// An `onStatus`-style info object.
pub fn status_info(level: &str, code: &str, description: &str) -> Amf0Value {
    Amf0Value::object([
        ("level", level.into()),
        ("code", code.into()),
        ("description", description.into()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_amf0_and_amf3_envelopes() {
        let cmd = Command::new(
            "play",
            4.0,
            Amf0Value::Null,
            vec!["stream?token=1".into(), Amf0Value::Number(-2000.0)],
        );
        let payload = cmd.encode();
        assert_eq!(Command::decode(20, &payload), Ok(cmd.clone()));
        let mut amf3 = vec![0u8];
        amf3.extend_from_slice(&payload);
        assert_eq!(Command::decode(MSG_COMMAND_AMF3, &amf3), Ok(cmd.clone()));
        assert_eq!(cmd.arg_str(0), Some("stream?token=1"));
    }

    #[test]
    fn a_command_of_too_many_values_is_refused() {
        let mut payload = amf0::encode_all(&["connect".into(), 1.0.into()]).to_vec();
        payload.extend(vec![0x05u8; MAX_COMMAND_VALUES - 2]);
        assert!(Command::decode(20, &payload).is_ok());
        payload.push(0x05);
        assert_eq!(
            Command::decode(20, &payload),
            Err(CommandError::Amf(Amf0Error::TooManyValues(
                MAX_COMMAND_VALUES
            )))
        );
    }

    #[test]
    fn missing_name_or_garbage_is_an_error() {
        assert_eq!(Command::decode(20, &[]), Err(CommandError::NoName));
        assert!(Command::decode(20, &[0x42, 0x42]).is_err());
        assert_eq!(
            Command::decode(20, &amf0::encode_all(&[Amf0Value::Number(1.0)])),
            Err(CommandError::NoName)
        );
    }
}
