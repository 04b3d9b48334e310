import type * as Undici from 'undici';
import agent from 'undici/lib/dispatcher/agent.js';
import client from 'undici/lib/dispatcher/client.js';
import pool from 'undici/lib/dispatcher/pool.js';
import './undici.js';

/**
 * undici's client, pool and agent without its index (see ./undici.ts), for the processes that
 * use them: the federation (gateway probes) and tools. A sidecar or gateway never imports this
 * file (src/sidecar/module-graph.test.ts): their HTTP/1.1 goes through src/sidecar/h1-connection.ts.
 */
export const Client = client;
export type Client = Undici.Client;
export const Pool = pool;
export type Pool = Undici.Pool;
export const Agent = agent;
export type Agent = Undici.Agent;
