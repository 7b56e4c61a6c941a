//! A gRPC codec for request messages that are already protobuf bytes (the trace stream's, see
//! `encode_span.rs`), with prost decoding of the responses.

use std::marker::PhantomData;

use bytes::{Buf, BufMut};
use oclayer_proto::prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Sends `Vec<u8>` messages as they are; decodes responses of type `R`.
#[derive(Debug)]
pub(super) struct EncodedCodec<R>(PhantomData<fn() -> R>);

impl<R> Default for EncodedCodec<R> {
    fn default() -> Self {
        EncodedCodec(PhantomData)
    }
}

impl<R: Message + Default + Send + 'static> Codec for EncodedCodec<R> {
    type Encode = Vec<u8>;
    type Decode = R;
    type Encoder = EncodedCodec<()>;
    type Decoder = EncodedCodec<R>;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedCodec::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        EncodedCodec::default()
    }
}

impl Encoder for EncodedCodec<()> {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl<R: Message + Default> Decoder for EncodedCodec<R> {
    type Item = R;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
        let len = src.remaining();
        R::decode(src.copy_to_bytes(len))
            .map(Some)
            .map_err(|e| Status::internal(format!("the agent's response does not decode: {e}")))
    }
}
