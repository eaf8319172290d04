//! Frames on the wire: the reader task that splits frames off the TLS
//! read half, and writing a frame (a large file's in steps, reporting
//! progress).

use bytes::BytesMut;
use sotto_proto::{ClientFrame, FrameDecoder, ServerFrame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::Batch;
use crate::{ClientError, ClientEvent, REQUEST_TIMEOUT};

/// Bytes read at a time when the next frame's size is not known yet.
const READ_CHUNK: usize = 16 * 1024;
/// A write buffer that grew past this (a file upload) is released after use.
const KEEP_WRITE_BUFFER: usize = 64 * 1024;

/// Splits frames off the read half until the connection ends; reports the
/// end as an `Err` batch.
pub(crate) async fn read_frames<R: AsyncRead + Unpin>(
    mut reader: R,
    mut buf: BytesMut,
    decoder: FrameDecoder,
    tx: mpsc::Sender<Batch>,
) {
    loop {
        let mut batch = Vec::new();
        let error = loop {
            match decoder.decode(&mut buf) {
                Ok(Some(raw)) => match ServerFrame::decode(&raw) {
                    Ok(frame) => batch.push(frame),
                    Err(e) => break Some(format!("the server sent an undecodable frame: {e}")),
                },
                Ok(None) => break None,
                Err(e) => break Some(format!("the server sent a bad frame: {e}")),
            }
        };
        if !batch.is_empty() && tx.send(Ok(batch)).await.is_err() {
            return;
        }
        if let Some(error) = error {
            let _ = tx.send(Err(error)).await;
            return;
        }
        // Reserve exactly for a large frame whose length is known, so a file
        // arrives without repeated reallocation.
        let want = decoder
            .needed(&buf)
            .map_or(READ_CHUNK, |n| n.saturating_sub(buf.len()).max(READ_CHUNK));
        buf.reserve(want);
        let reason = match reader.read_buf(&mut buf).await {
            Ok(0) if buf.is_empty() => "the server closed the connection".to_owned(),
            Ok(0) => "the server closed the connection in the middle of a frame".to_owned(),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                "the connection ended abruptly (the server stopped or the network dropped)"
                    .to_owned()
            }
            Err(e) => format!("connection lost: {e}"),
        };
        let _ = tx.send(Err(reason)).await;
        return;
    }
}

/// Encodes `frame` into `buf` and writes it out.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    buf: &mut BytesMut,
    frame: &ClientFrame,
) -> Result<(), ClientError> {
    write_frame_reporting(writer, buf, frame, None).await
}

/// A file being sent: its progress goes to the front end.
pub(crate) struct Upload<'a> {
    pub events: &'a mpsc::Sender<ClientEvent>,
    pub id: u64,
    pub name: String,
}

/// Bytes written between two progress reports of a file being sent.
const PROGRESS_STEP: usize = 256 * 1024;

/// Like [`write_frame`]; a large frame carrying a file is written in
/// steps, each reported as [`ClientEvent::Sending`] (dropped, not waited
/// for, when the front end is behind).
pub(crate) async fn write_frame_reporting<W: AsyncWrite + Unpin>(
    writer: &mut W,
    buf: &mut BytesMut,
    frame: &ClientFrame,
    upload: Option<Upload<'_>>,
) -> Result<(), ClientError> {
    buf.clear();
    frame
        .encode(buf)
        .map_err(|e| ClientError::Internal(e.to_string()))?;
    let total = buf.len();
    let upload = upload.filter(|_| total > PROGRESS_STEP);
    let written = async {
        match &upload {
            None => writer.write_all(buf).await?,
            Some(upload) => {
                for (n, chunk) in buf.chunks(PROGRESS_STEP).enumerate() {
                    writer.write_all(chunk).await?;
                    let sent = ((n + 1) * PROGRESS_STEP).min(total);
                    let _ = upload.events.try_send(ClientEvent::Sending {
                        id: upload.id,
                        name: upload.name.clone(),
                        sent: sent as u64,
                        total: total as u64,
                    });
                }
            }
        }
        writer.flush().await
    };
    // Generous: a 10 MiB file on a slow link takes a while.
    let result = tokio::time::timeout(REQUEST_TIMEOUT, written).await;
    if buf.capacity() > KEEP_WRITE_BUFFER {
        *buf = BytesMut::new();
    }
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ClientError::ConnectionLost(e.to_string())),
        Err(_) => Err(ClientError::ConnectionLost(
            "the server stopped reading".to_owned(),
        )),
    }
}
