// Compiled (never run) by `npm run typecheck`: the public types as an ES module sees them.
import {
  KvClient,
  EmbeddedServer,
  startLocalCluster,
  DongtingError,
  NotFoundError,
  InvalidKeyError,
  NodeKind,
  type KvNode,
  type WriteResult,
} from 'dongting';

export async function demo(toml: string): Promise<number> {
  const server: EmbeddedServer = await EmbeddedServer.start(toml);
  const status = server.status();
  const leaders: number = status.groups.filter((g) => g.role === 'leader').length;
  const kv = new KvClient([server.serviceAddr], { timeoutMs: 2000 });
  const w: WriteResult = await kv.put('app.x', Buffer.from('1'));
  const n: KvNode | null = await kv.get('app.x', { group: 0 });
  const text: string | undefined = n?.text;
  const kind: NodeKind | undefined = n?.kind;
  const owner: bigint = kv.clientId;
  const all: (KvNode | null)[] = await kv.batchGet(['app.x', new Uint8Array([97])]);
  await kv.batchPut(new Map([['a', 'b']]));
  await kv.batchPut({ a: 'b' });
  await kv.compareAndSet('app.x', '1', '');
  await kv.putTemp('app.t', 'v', 1000);
  try {
    await kv.remove('app.none');
  } catch (e) {
    if (e instanceof NotFoundError || e instanceof InvalidKeyError) console.log(e.code, e.codeName);
    else if (e instanceof DongtingError) console.log(e.retryable, e.leaderHint);
  }
  await kv.close();
  await server.stop({ graceMs: 500 });
  const cluster = await startLocalCluster(3, { groups: [0, 1] });
  const c: KvClient = cluster.client({ group: 1 });
  await c[Symbol.asyncDispose]();
  await cluster.stop();
  return w.index + leaders + all.length + (text?.length ?? 0) + (kind ?? 0) + Number(owner & 1n);
}
