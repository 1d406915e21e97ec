use super::*;
use std::collections::VecDeque;

struct BoundaryReader {
    input: Cursor<Vec<u8>>,
    boundaries: VecDeque<usize>,
    pending_at_boundary: bool,
    requested_sizes: Arc<Mutex<Vec<usize>>>,
}

impl AsyncRead for BoundaryReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let position = self.input.position() as usize;
        if self.boundaries.front().copied() == Some(position) {
            self.boundaries.pop_front();
            if self.pending_at_boundary {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        self.requested_sizes.lock().unwrap().push(buffer.len());
        let end = self
            .boundaries
            .front()
            .copied()
            .unwrap_or(self.input.get_ref().len());
        let count = buffer.len().min(end - position);
        Pin::new(&mut self.input).poll_read(cx, &mut buffer[..count])
    }
}

#[async_rt::test]
async fn read_buffer_recovers_after_a_receive_burst_with_pending() {
    let payload = vec![7_u8; 190];
    let frames = vec![payload.as_slice(); 1056];
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let source = BoundaryReader {
        input: Cursor::new(encoded_stream(&frames)),
        boundaries: (1024..=1056).map(|i| 64 + i * 192).collect(),
        pending_at_boundary: true,
        requested_sizes: Arc::clone(&sizes),
    };
    let mut reader = ZmqFramedRead::new(Box::new(source), Arc::new(SocketOptions::default()));
    let mut retained = Vec::new();
    while let Some(item) = reader.next().await {
        if let Message::Message(message) = item.unwrap() {
            retained.push(message);
        }
    }
    assert_eq!(retained.len(), frames.len());
    assert!(retained
        .iter()
        .all(|message| message.get(0).unwrap().as_ref() == payload.as_slice()));
    let sizes = sizes.lock().unwrap();
    // Retain shared output storage through the burst and the subsequent short reads.
    assert!(sizes.contains(&MAX_READ_CHUNK_SIZE));
    assert_eq!(*sizes.last().unwrap(), 512);
}

#[async_rt::test]
async fn read_buffer_uses_configured_initial_and_maximum_read_sizes() {
    let payload = vec![7_u8; 190];
    let frames = vec![payload.as_slice(); 1024];
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let source = RecordingReader::new(encoded_stream(&frames), Arc::clone(&sizes));
    let mut options = SocketOptions::default();
    options.read_buffer(300, 3000, 3);
    let mut reader = ZmqFramedRead::new(Box::new(source), Arc::new(options));
    let mut retained = Vec::new();
    while let Some(item) = reader.next().await {
        retained.push(item.unwrap());
    }
    assert_eq!(retained.len(), 1025);
    let sizes = sizes.lock().unwrap();
    assert_eq!(&sizes[..5], &[300, 600, 1200, 2400, 3000]);
    assert!(sizes.iter().all(|&size| size <= 3000));
}

#[test]
fn read_buffer_recovery_requires_consecutive_short_positive_reads() {
    for (reads, expected) in [
        (vec![190], 65_536),
        (vec![190, 190], 512),
        (vec![190, 32_768, 190], 65_536),
        (vec![190, 65_536, 190], 65_536),
        (vec![1, 1], 256),
        (vec![0], 65_536),
    ] {
        let mut reader = ZmqFramedRead::new(
            Box::new(Cursor::new(Vec::new())),
            Arc::new(SocketOptions::default()),
        );
        reader.read_chunk_size = MAX_READ_CHUNK_SIZE;
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        for count in reads {
            reader.inner = Source::Futures(Box::new(Cursor::new(vec![7; count])));
            assert!(
                matches!(reader.poll_read_into_buffer(&mut cx, 1), Poll::Ready(Ok(n)) if n == count)
            );
        }
        assert_eq!(reader.read_chunk_size, expected);
    }
}

#[async_rt::test]
async fn read_buffer_recovery_does_not_oscillate_between_small_batches() {
    let payload = vec![7_u8; 190];
    let input = encoded_stream(&vec![payload.as_slice(); 4096]);
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let source = BoundaryReader {
        input: Cursor::new(input.clone()),
        boundaries: (1..=64).map(|i| 64 + i * 64 * 192).collect(),
        pending_at_boundary: false,
        requested_sizes: Arc::clone(&sizes),
    };
    let mut reader = ZmqFramedRead::new(Box::new(source), Arc::new(SocketOptions::default()));
    let mut retained = Vec::new();
    while let Some(item) = reader.next().await {
        if let Message::Message(message) = item.unwrap() {
            retained.push(message);
        }
    }
    assert_eq!(retained.len(), 4096);
    assert!(retained
        .iter()
        .all(|message| message.get(0).unwrap().as_ref() == payload.as_slice()));
    let sizes = sizes.lock().unwrap();
    assert_eq!(sizes.len(), 72);
    assert_eq!(sizes.iter().sum::<usize>(), 1_073_024);
}

struct InterruptedRead {
    error: bool,
}

impl AsyncRead for InterruptedRead {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        // AsyncRead may touch the supplied space before Pending or an error.
        buffer.fill(0xFF);
        if self.error {
            Poll::Ready(Err(io::Error::from(ErrorKind::ConnectionReset)))
        } else {
            Poll::Pending
        }
    }
}

#[test]
fn read_buffer_pending_and_errors_preserve_buffered_data_and_recovery_state() {
    for error in [false, true] {
        let mut reader = ZmqFramedRead::new(
            Box::new(InterruptedRead { error }),
            Arc::new(SocketOptions::default()),
        );
        reader.read_chunk_size = MAX_READ_CHUNK_SIZE;
        reader.short_reads = 1;
        reader.buffer.extend_from_slice(b"partial frame");
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let result = reader.poll_read_into_buffer(&mut cx, 0);
        if error {
            assert!(
                matches!(result, Poll::Ready(Err(e)) if e.kind() == ErrorKind::ConnectionReset)
            );
        } else {
            assert!(result.is_pending());
        }
        assert_eq!(&reader.buffer[..], b"partial frame");
        assert_eq!(reader.read_chunk_size, MAX_READ_CHUNK_SIZE);
        assert_eq!(reader.short_reads, 1);
    }
}

#[async_rt::test]
async fn read_buffer_recovery_preserves_fragmented_retained_multipart_messages() {
    use asynchronous_codec::Encoder;
    let mut expected = crate::ZmqMessage::from(Bytes::from(vec![9; 338_729]));
    expected.push_back(Bytes::from_static(b"topic"));
    expected.push_back(Bytes::from(vec![3; 16_042]));
    let mut wire = BytesMut::from(ZmqGreeting::default());
    let mut codec = ZmqCodec::new();
    for _ in 0..3 {
        codec
            .encode(Message::Message(expected.clone()), &mut wire)
            .unwrap();
    }
    let mut boundaries = vec![1, 2, 9, 63, 64, 65, 66, 72, 73];
    boundaries.extend((8191..wire.len()).step_by(8191));
    let source = BoundaryReader {
        input: Cursor::new(wire.to_vec()),
        boundaries: boundaries.into(),
        pending_at_boundary: true,
        requested_sizes: Arc::new(Mutex::new(Vec::new())),
    };
    let mut reader = ZmqFramedRead::new(Box::new(source), Arc::new(SocketOptions::default()));
    let mut retained = Vec::new();
    while let Some(item) = reader.next().await {
        if let Message::Message(message) = item.unwrap() {
            retained.push(message);
        }
    }
    assert_eq!(retained.len(), 3);
    assert!(retained
        .iter()
        .all(|message| message.iter().eq(expected.iter())));
}

#[async_rt::test]
async fn read_buffer_recovery_reports_truncated_frames_at_eof() {
    let mut input = encoded_stream(&[&vec![7; 338_729]]);
    input.pop();
    let mut reader = ZmqFramedRead::new(
        Box::new(Cursor::new(input)),
        Arc::new(SocketOptions::default()),
    );
    assert!(matches!(
        reader.next().await,
        Some(Ok(Message::Greeting(_)))
    ));
    assert!(
        matches!(reader.next().await, Some(Err(CodecError::Io(error))) if error.kind() == ErrorKind::UnexpectedEof)
    );
}

#[test]
fn read_buffer_uses_configured_confirmation_count_and_recovery_floor() {
    for (confirmation, reads, expected) in [
        (1, vec![190], 600),
        (3, vec![190, 190], 3000),
        (3, vec![190, 190, 190], 600),
        (3, vec![190, 1500, 190, 190], 3000),
    ] {
        let mut options = SocketOptions::default();
        options.read_buffer(300, 3000, confirmation);
        let mut reader = ZmqFramedRead::new(Box::new(Cursor::new(Vec::new())), Arc::new(options));
        reader.read_chunk_size = 3000;
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        for count in reads {
            reader.inner = Source::Futures(Box::new(Cursor::new(vec![7; count])));
            assert!(
                matches!(reader.poll_read_into_buffer(&mut cx, 1), Poll::Ready(Ok(n)) if n == count)
            );
        }
        assert_eq!(reader.read_chunk_size, expected);
    }
}

#[test]
fn read_buffer_rejects_invalid_configuration_before_socket_construction() {
    for (initial, maximum, short_reads) in [
        (0, 65536, 2),
        (128, 0, 2),
        (129, 128, 2),
        (128, isize::MAX as usize / 2 + 1, 2),
        (128, 65536, 0),
    ] {
        assert!(std::panic::catch_unwind(|| {
            SocketOptions::default().read_buffer(initial, maximum, short_reads);
        })
        .is_err());
    }
}

#[test]
fn read_buffer_shares_configuration_but_keeps_connection_state_independent() {
    let options = Arc::new(SocketOptions::default());
    let mut first = ZmqFramedRead::new(Box::new(Cursor::new(vec![7])), Arc::clone(&options));
    let second = ZmqFramedRead::new(Box::new(Cursor::new(Vec::new())), Arc::clone(&options));
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(matches!(
        first.poll_read_into_buffer(&mut cx, 1),
        Poll::Ready(Ok(1))
    ));
    assert!(Arc::ptr_eq(&first.options, &second.options));
    assert_eq!(first.short_reads, 1);
    assert_eq!(second.short_reads, 0);
}

/// zerowire patch: a tokio reader reads into uninitialised room (no zeroing) and decodes the
/// same frames, small and large, across reads that end anywhere, over a real socket pair.
#[cfg(all(feature = "tokio-runtime", target_family = "unix"))]
#[tokio::test]
async fn tokio_reader_decodes_the_same_frames_without_zeroed_room() {
    use tokio::io::AsyncWriteExt;
    let small: Vec<u8> = (0..190u8).collect();
    let large: Vec<u8> = (0..(1 << 20) + 3).map(|i| (i % 251) as u8).collect();
    let mut frames: Vec<&[u8]> = Vec::new();
    for i in 0..300 {
        frames.push(if i % 50 == 7 { &large } else { &small });
    }
    let stream = encoded_stream(&frames);
    let (mut write, read) = tokio::net::UnixStream::pair().unwrap();
    let writer = tokio::spawn(async move {
        // Odd-sized writes, so reads end inside headers and bodies.
        for chunk in stream.chunks(7919) {
            write.write_all(chunk).await.unwrap();
        }
    });
    let mut reader = ZmqFramedRead::from_tokio(Box::new(read), Arc::new(SocketOptions::default()));
    let mut got = Vec::new();
    while let Some(item) = reader.next().await {
        if let Message::Message(message) = item.unwrap() {
            got.push(message.get(0).unwrap().clone());
        }
    }
    writer.await.unwrap();
    assert_eq!(got.len(), frames.len());
    for (got, want) in got.iter().zip(&frames) {
        assert_eq!(got.as_ref(), *want);
    }
}

/// A greeting, then each message's frames with their MORE flags.
fn encoded_messages(messages: &[Vec<&[u8]>]) -> Vec<u8> {
    let mut bytes = BytesMut::from(ZmqGreeting::default());
    for message in messages {
        for (i, frame) in message.iter().enumerate() {
            let more = u8::from(i + 1 < message.len());
            if frame.len() > u8::MAX as usize {
                bytes.extend_from_slice(&[0b0000_0010 | more]);
                bytes.extend_from_slice(&(frame.len() as u64).to_be_bytes());
            } else {
                bytes.extend_from_slice(&[more, frame.len() as u8]);
            }
            bytes.extend_from_slice(frame);
        }
    }
    bytes.to_vec()
}

/// A tokio reader over a socket pair whose other end writes `stream` in `chunk`-byte writes.
fn tokio_reader(stream: Vec<u8>, chunk: usize, pool: &'static FramePool) -> ZmqFramedRead {
    use tokio::io::AsyncWriteExt;
    let (mut write, read) = tokio::net::UnixStream::pair().unwrap();
    tokio::spawn(async move {
        for part in stream.chunks(chunk) {
            write.write_all(part).await.unwrap();
        }
    });
    let mut reader = ZmqFramedRead::from_tokio(Box::new(read), Arc::new(SocketOptions::default()));
    reader.pool = pool;
    reader
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i + seed) % 251) as u8).collect()
}

#[async_rt::test]
async fn large_frames_are_read_whole_within_multipart_messages() {
    static POOL: FramePool = FramePool::new(std::time::Duration::from_secs(3600));
    let min = crate::codec::frame_pool::WHOLE_FRAME_MIN;
    let small = pattern(190, 1);
    let (below, at, large) = (
        pattern(min - 1, 2),
        pattern(min, 3),
        pattern((1 << 20) + 3, 4),
    );
    let messages: Vec<Vec<&[u8]>> = vec![
        vec![&small, &large, &small],
        vec![&large, &large],
        vec![&below],
        vec![&at, &small],
        vec![&small],
        vec![&large],
    ];
    for chunk in [7919, 1 << 20, 3] {
        let stream = encoded_messages(&messages);
        // Three-byte writes take a while; a shorter run of them covers reads ending anywhere.
        let take = if chunk == 3 { 4 } else { messages.len() };
        let stream = if chunk == 3 {
            encoded_messages(&messages[..take])
        } else {
            stream
        };
        let mut reader = tokio_reader(stream, chunk, &POOL);
        let mut got = Vec::new();
        while let Some(item) = reader.next().await {
            if let Message::Message(message) = item.unwrap() {
                got.push(message);
            }
        }
        assert_eq!(got.len(), take, "chunk {chunk}");
        for (got, want) in got.iter().zip(&messages) {
            assert_eq!(got.len(), want.len());
            for (frame, want) in got.iter().zip(want) {
                assert_eq!(frame.as_ref(), *want, "chunk {chunk}");
            }
        }
    }
}

/// The next message's last frame (after the greeting).
async fn next_body(reader: &mut ZmqFramedRead) -> Bytes {
    loop {
        match reader.next().await.unwrap().unwrap() {
            Message::Message(m) => return m.into_vec().pop().unwrap(),
            Message::Greeting(_) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[async_rt::test]
async fn a_large_frame_reuses_the_memory_of_one_dropped_before() {
    static POOL: FramePool = FramePool::new(std::time::Duration::from_secs(3600));
    let large = pattern(1 << 20, 5);
    let other = pattern(1 << 20, 6);
    let stream = encoded_messages(&[vec![&large], vec![&other], vec![&large]]);
    let mut reader = tokio_reader(stream, 65536, &POOL);
    let first = next_body(&mut reader).await;
    assert_eq!(first.as_ref(), large.as_slice());
    let at = first.as_ptr();
    assert_eq!(POOL.held(), (0, 0), "the body is the pooled memory itself");
    drop(first);
    assert_eq!(POOL.held(), (1, 1 << 20));
    let second = next_body(&mut reader).await;
    assert_eq!(second.as_ptr(), at, "read into the same memory");
    assert_eq!(second.as_ref(), other.as_slice());
    // Still held: the next one gets memory of its own.
    let third = next_body(&mut reader).await;
    assert_ne!(third.as_ptr(), at);
    assert_eq!(third.as_ref(), large.as_slice());
}

#[async_rt::test]
async fn a_stream_ending_within_a_large_frame_is_an_error() {
    static POOL: FramePool = FramePool::new(std::time::Duration::from_secs(3600));
    let large = pattern(1 << 20, 7);
    let mut stream = encoded_messages(&[vec![&large]]);
    stream.truncate(stream.len() - 1000);
    let mut reader = tokio_reader(stream, 65536, &POOL);
    assert!(matches!(
        reader.next().await,
        Some(Ok(Message::Greeting(_)))
    ));
    match reader.next().await {
        Some(Err(CodecError::Io(e))) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
        other => panic!("{other:?}"),
    }
    // Its memory went back to the pool with the reader's state.
    drop(reader);
    assert_eq!(POOL.held().0, 1);
}
