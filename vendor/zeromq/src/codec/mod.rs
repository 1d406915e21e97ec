//! Implements a codec for ZMQ, providing a way to convert from a byte-oriented
//! io device to a protocal comprised of [`Message`] frames. See [`FramedIo`]

mod command;
mod error;
mod frame_pool;
mod framed;
mod greeting;
// zerowire patch: the framed writer (no copy of large frames).
pub(crate) mod mechanism;
mod write;
mod zmq_codec;

pub(crate) use command::{parse_properties, put_properties, ZmqCommand, ZmqCommandName};
pub use error::CodecError;
pub(crate) use error::CodecResult;
pub use frame_pool::release_frame_pool;
pub(crate) use framed::FramedIo;
pub use framed::ZmqFramedRead;
pub(crate) use greeting::{ZmqGreeting, ZmtpVersion};
pub(crate) use write::ZmqFramedWrite;
pub use zmq_codec::ZmqCodec;

use crate::message::ZmqMessage;

#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone)]
pub enum Message {
    Greeting(ZmqGreeting),
    Command(ZmqCommand),
    Message(ZmqMessage),
}
