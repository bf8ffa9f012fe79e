import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { Pool } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { callUpstream } from './upstream-call.js';

let server: Server | undefined;
let pool: Pool | undefined;

/** A target on a loopback port, and a pool to it like the adapter's. */
const target = async (handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Pool> => {
  server = createServer(handler);
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { keepAliveTimeout: 10_000 });
  return pool;
};

const restOf = async (stream: Readable): Promise<string> => {
  let text = '';
  for await (const chunk of stream as AsyncIterable<Buffer>) text += chunk.toString();
  return text;
};

afterEach(async () => {
  await pool?.destroy();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  pool = undefined;
  server = undefined;
});

describe('callUpstream', () => {
  it('reads a small body whole, with the status and headers as undici parses them', async () => {
    const upstream = await target((_req, res) => {
      res.writeHead(201, { 'content-type': 'application/json', 'set-cookie': ['a=1', 'b=2'] });
      res.end('{"email":"ada@example.com"}');
    });
    const response = await callUpstream(upstream, { method: 'GET', path: '/doc', headers: {} }).response;
    expect(response.statusCode).toBe(201);
    expect(response.headers['content-type']).toBe('application/json');
    expect(response.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    const read = await response.readUpTo(1024);
    expect(read).toEqual({ bytes: Buffer.from('{"email":"ada@example.com"}'), complete: true });
  });

  it('hands over what came past the limit, and the rest through the stream', async () => {
    const body = 'x'.repeat(200_000);
    const upstream = await target((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      // In pieces, so the body comes in several chunks.
      res.write(body.slice(0, 1000));
      setTimeout(() => res.end(body.slice(1000)), 20);
    });
    const response = await callUpstream(upstream, { method: 'GET', path: '/', headers: {} }).response;
    const read = await response.readUpTo(500);
    expect(read.complete).toBe(false);
    expect(read.bytes.length).toBeGreaterThan(500);
    expect(read.bytes.toString() + (await restOf(response.body))).toBe(body);
  });

  it('never takes a body the target cut short for a whole one', async () => {
    const upstream = await target((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
      res.write('{"email":"ada@');
      setTimeout(() => req.socket.destroy(), 20);
    });
    const response = await callUpstream(upstream, { method: 'GET', path: '/', headers: {} }).response;
    await expect(response.readUpTo(1024)).rejects.toThrow();
  });

  it('fails the stream of a body the target cut short', async () => {
    const upstream = await target((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
      res.write('part of it');
      setTimeout(() => req.socket.destroy(), 20);
    });
    const response = await callUpstream(upstream, { method: 'GET', path: '/', headers: {} }).response;
    await expect(restOf(response.body)).rejects.toThrow();
  });

  it('rejects when the target never answers and the call is aborted, and closes its connection', async () => {
    let closed!: () => void;
    const targetClosed = new Promise<void>((resolve) => (closed = resolve));
    const upstream = await target((req) => req.socket.once('close', closed));
    const call = callUpstream(upstream, { method: 'GET', path: '/', headers: {} });
    setTimeout(() => call.abort(new Error('the agent went away')), 50);
    await expect(call.response).rejects.toThrow('the agent went away');
    await targetClosed;
  });

  it('aborted while the body comes: the read fails and the target sees its connection closed', async () => {
    let closed!: () => void;
    const targetClosed = new Promise<void>((resolve) => (closed = resolve));
    const upstream = await target((req, res) => {
      req.socket.once('close', closed);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('[1,');
    });
    const call = callUpstream(upstream, { method: 'GET', path: '/', headers: {} });
    const response = await call.response;
    const reading = response.readUpTo(1024);
    call.abort(new Error('the agent went away'));
    await expect(reading).rejects.toThrow('the agent went away');
    await targetClosed;
  });

  it('an abort before undici connected the call is applied once it does', async () => {
    let requests = 0;
    const upstream = await target((_req, res) => {
      requests += 1;
      res.end('late');
    });
    const call = callUpstream(upstream, { method: 'GET', path: '/', headers: {} });
    call.abort(new Error('gone at once'));
    await expect(call.response).rejects.toThrow('gone at once');
    expect(requests).toBe(0);
  });

  it('rejects at once on a closed pool', async () => {
    const upstream = await target((_req, res) => res.end());
    await upstream.close();
    await expect(callUpstream(upstream, { method: 'GET', path: '/', headers: {} }).response).rejects.toThrow();
  });
});
