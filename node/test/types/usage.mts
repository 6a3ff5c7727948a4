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
  type ListPage,
  type WriteResult,
  type Watch,
  type Lock,
  NotLockNodeError,
  IsLockError,
  ErrorCode,
  errorCodes,
  type ErrorCodeEntry,
} from 'dongting';

export async function demo(toml: string): Promise<number> {
  const server: EmbeddedServer = await EmbeddedServer.start(toml);
  const status = server.status();
  if (!server.metrics().includes('dongting_group_term')) throw new Error('no metrics');
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

export async function watchAndLock(kv: KvClient): Promise<bigint> {
  const w: Watch = await kv.watch(['app', new Uint8Array([98])], { fromIndex: 5, group: 0 });
  for await (const ev of w) {
    if (ev.compacted) {
      const floor: number = ev.historyFloor;
      console.log(floor, ev.index);
    } else {
      const key: Buffer = ev.key;
      const kind: NodeKind = ev.kind;
      console.log(key, kind, ev.value.length, ev.index);
    }
    break;
  }
  await w.close();
  const resumed = await kv.watch('app', { fromIndex: BigInt(w.lastIndex) });
  await resumed[Symbol.asyncDispose]();
  const lock: Lock = kv.createLock('locks.job', { group: 0 });
  const token: bigint | null = await lock.tryLock(30_000, 1_000);
  if (token !== null && lock.isHeld()) await lock.updateLease(lock.leaseRestMillis() + 1000);
  try {
    await lock.unlock();
  } catch (e) {
    if (e instanceof NotLockNodeError || e instanceof IsLockError) console.log(e.code);
  }
  await lock[Symbol.asyncDispose]();
  return (token ?? 0n) + (lock.token ?? 0n);
}

export async function pages(kv: KvClient): Promise<string[]> {
  const all: KvNode[] = await kv.list('app');
  const first: ListPage = await kv.listPage('app', { limit: 2 });
  const more: boolean = first.more;
  const next = await kv.listPage(Buffer.from('app'), { startAfter: first.nodes[0]?.key ?? '', limit: 2n, group: 0 });
  const names: string[] = [];
  for await (const node of kv.iterList('app', { limit: 100 })) names.push(node.name);
  return [...names, String(all.length + next.nodes.length), String(more)];
}

export function codeOf(e: DongtingError): string | undefined {
  const table: ErrorCodeEntry[] = errorCodes();
  const notFound: number = ErrorCode.NOT_FOUND;
  return e.code === notFound ? 'NOT_FOUND' : table.find((c) => c.code === e.code)?.name;
}
