// Compiled (never run) by `npm run typecheck`: the public types through require().
import dongting = require('dongting');

export async function demo(servers: string): Promise<string | null> {
  const kv = new dongting.KvClient(servers);
  try {
    return await kv.getText('app.x');
  } catch (e) {
    if (e instanceof dongting.TimeoutError) return null;
    throw e;
  } finally {
    await kv.close();
  }
}
