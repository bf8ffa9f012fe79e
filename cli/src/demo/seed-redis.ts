import { connect } from 'node:net';
import { decodeReply, encodeCommand, RespFramer, type RespValue } from '@sluice/codec-resp';
import type { RedisResourceConfig } from '@sluice/config';
import type { DemoShop } from './shop-data.js';
import { SluiceError, SluiceErrorCode } from '@sluice/contracts';

export class DemoRedisError extends SluiceError {
  readonly code = SluiceErrorCode.DemoRedis;
  override readonly expose = true;
}

/** Sends commands in one pipeline and returns their replies in order; any error reply throws. */
const pipeline = (host: string, port: number, commands: readonly (readonly string[])[]): Promise<RespValue[]> =>
  new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    const framer = new RespFramer('reply');
    const replies: RespValue[] = [];
    socket.setTimeout(10_000, () => socket.destroy(new DemoRedisError(`Redis at ${host}:${port} did not answer in 10 s`)));
    socket.once('error', (error) => reject(new DemoRedisError(`cannot reach Redis at ${host}:${port}: ${error.message}`)));
    socket.on('data', (chunk) => {
      for (const frame of framer.push(chunk)) replies.push(decodeReply(frame));
      if (replies.length < commands.length) return;
      socket.end();
      const failed = replies.findIndex((reply) => reply.type === 'error');
      if (failed === -1) return resolve(replies);
      const reply = replies[failed] as { value: string };
      reject(new DemoRedisError(`Redis refused ${commands[failed]![0]} ${commands[failed]![1] ?? ''}: ${reply.value}`));
    });
    socket.write(Buffer.concat(commands.map((command) => encodeCommand(command))));
  });

export interface RedisSeedResult {
  readonly user: string | undefined;
  readonly keyPrefix: string;
  readonly keys: number;
}

/**
 * Writes the demo's keys under `keyPrefix` and, when the resource logs in as a named user, makes
 * that ACL user with the configured password, allowed only keys and channels under the prefix
 * and no administrative or dangerous commands: even a mistaken policy could not let an agent
 * touch anything else on the Redis it shares. The administrator connection is the default user
 * without a password (a local development Redis, as `docker compose up redis` runs it).
 */
export const seedRedis = async (resource: RedisResourceConfig, password: string | undefined, shop: DemoShop, keyPrefix: string): Promise<RedisSeedResult> => {
  const { host, port, db } = resource.target;
  const user = resource.credentials.username;
  const commands: string[][] = [];
  if (user !== undefined && user !== 'default') {
    const credential = password === undefined ? 'nopass' : `>${password}`;
    commands.push(['ACL', 'SETUSER', user, 'reset', 'on', credential, `~${keyPrefix}*`, `&${keyPrefix}*`, '+@all', '-@admin', '-@dangerous']);
  }
  if (db !== 0) commands.push(['SELECT', String(db)]);
  const customers = shop.customers.slice(0, 10);
  for (const customer of customers) {
    commands.push([
      'SET',
      `${keyPrefix}customer:${customer.id}`,
      JSON.stringify({ name: customer.fullName, email: customer.email, phone: customer.phone, card: customer.cardNumber }),
    ]);
  }
  commands.push(['DEL', `${keyPrefix}recent-logins`]);
  commands.push(['RPUSH', `${keyPrefix}recent-logins`, ...customers.map((customer) => `${customer.email} from ${customer.signupIp}`)]);
  await pipeline(host, port, commands);
  return { user, keyPrefix, keys: customers.length + 1 };
};

