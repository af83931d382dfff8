/**
 * Child process for the edits memory test (test/http/images-edits.test.ts): a Deepshi server with the default
 * upload limits, reporting its memory over IPC. Not a test file itself.
 */
import { startTestServer } from '../helpers/test-server.ts';

const t = await startTestServer();
const account = await t.createAccount('10');
process.send!({ url: t.url, key: account.key });
process.on('message', async (message) => {
  if (message === 'stats') {
    const memory = process.memoryUsage();
    // maxRSS is in kilobytes on Linux: the peak resident set since the process started.
    process.send!({ maxRss: process.resourceUsage().maxRSS * 1024, rss: memory.rss, arrayBuffers: memory.arrayBuffers });
  } else if (message === 'close') {
    await t.close();
    process.exit(0);
  }
});
