// Reads a text/event-stream response as it arrives: each event's JSON data, and each keepalive comment.

export async function readEventStream(
  response: Response,
  handlers: { onEvent(data: unknown, event: string | undefined): void; onKeepalive?(): void },
  signal?: AbortSignal,
): Promise<void> {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  const cancel = () => void reader.cancel().catch(() => undefined);
  signal?.addEventListener('abort', cancel, { once: true });
  let buffer = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, '\n');
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event: string | undefined;
        const data: string[] = [];
        for (const line of frame.split('\n')) {
          if (line.startsWith(':')) handlers.onKeepalive?.();
          else if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        if (!data.length) continue;
        const text = data.join('\n');
        if (text === '[DONE]') return;
        handlers.onEvent(JSON.parse(text), event);
      }
    }
  } finally {
    signal?.removeEventListener('abort', cancel);
  }
}
