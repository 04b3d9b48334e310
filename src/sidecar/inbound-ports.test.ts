import type { TLSSocket } from 'node:tls';
import { describe, expect, test } from 'vitest';
import { authorityPort, selectInboundAlpn, splitAppPorts, TcpPorts, type SecureAcceptor } from './inbound-ports.js';

describe('the app port a request names', () => {
  test.each([
    ['cart.shop.svc.clusterset.local:9090', 9090],
    ['cart.shop.mesh', undefined],
    [undefined, undefined],
    ['[fd00::1]:8080', 8080],
    ['[fd00::1]', undefined],
    ['cart.shop.mesh:', undefined],
    ['cart.shop.mesh:99999', undefined],
    ['cart.shop.mesh:80x', undefined],
  ])('%s: %s', (authority, port) => {
    expect(authorityPort(authority)).toBe(port);
  });
});

describe('which ALPN an inbound in front of several app ports selects', () => {
  const acceptor = (): SecureAcceptor & { got: string[] } => {
    const got: string[] = [];
    return { got, acceptSecure: (socket: TLSSocket) => void got.push(String(socket.alpnProtocol)) };
  };
  const redis = acceptor();
  const fallback = acceptor();
  const withFallback = new TcpPorts(new Map([[6379, redis]]), fallback);
  const without = new TcpPorts(new Map([[6379, redis]]), undefined);

  test.each<[string, TcpPorts, string[], boolean, string | undefined]>([
    ['a listener for port 6379', without, ['isthmus-tcp/6379', 'isthmus-tcp'], true, 'isthmus-tcp/6379'],
    ['a listener for a port the app does not have, with a default TCP port', withFallback, ['isthmus-tcp/7000', 'isthmus-tcp'], true, 'isthmus-tcp'],
    ['a listener for a port the app does not have, no default TCP port', without, ['isthmus-tcp/7000', 'isthmus-tcp'], true, undefined],
    ['a listener that names no port', withFallback, ['isthmus-tcp'], true, 'isthmus-tcp'],
    ['HTTP/2 from another sidecar', withFallback, ['h2'], true, 'h2'],
    ['HTTP/1.1 from another sidecar', without, ['http/1.1'], true, 'http/1.1'],
    ['a browser-like offer', without, ['h2', 'http/1.1'], true, 'h2'],
    ['HTTP to an app with TCP ports only', without, ['h2', 'http/1.1'], false, undefined],
  ])('%s', (_name, tcp, offered, servesHttp, selected) => {
    expect(selectInboundAlpn(tcp, offered, servesHttp)).toBe(selected);
  });

  test('a connection goes to the TCP inbound of the port its ALPN chose', () => {
    withFallback.accept({ alpnProtocol: 'isthmus-tcp/6379' } as TLSSocket);
    withFallback.accept({ alpnProtocol: 'isthmus-tcp' } as TLSSocket);
    expect(redis.got).toEqual(['isthmus-tcp/6379']);
    expect(fallback.got).toEqual(['isthmus-tcp']);
  });
});

describe('an app\'s ports split between the HTTP inbound and TCP inbounds', () => {
  const http = { port: 8081, address: '127.0.0.1:8081', protocol: 'http' as const };
  const grpc = { port: 9090, address: '127.0.0.1:9090', protocol: 'h2c' as const };
  const redis = { port: 6379, address: '127.0.0.1:6379', protocol: 'tcp' as const };
  test.each([
    ['HTTP default, HTTP and TCP ports', { address: '127.0.0.1:8080', protocol: 'http' as const }, [grpc, redis],
      { http: { fallback: { address: '127.0.0.1:8080', protocol: 'http' }, ports: [grpc] }, tcp: { fallback: redis, ports: [redis] } }],
    ['TCP default and an HTTP port: HTTP requests naming no port go to the first HTTP port', { address: '127.0.0.1:6379', protocol: 'tcp' as const }, [http],
      { http: { fallback: { address: '127.0.0.1:8081', protocol: 'http' }, ports: [http] }, tcp: { fallback: { port: 0, address: '127.0.0.1:6379', protocol: 'tcp' }, ports: [] } }],
    ['HTTP only', { address: '127.0.0.1:8080', protocol: 'http' as const }, [http],
      { http: { fallback: { address: '127.0.0.1:8080', protocol: 'http' }, ports: [http] }, tcp: undefined }],
  ])('%s', (_name, defaults, ports, expected) => {
    expect(splitAppPorts(defaults, ports)).toEqual(expected);
  });
});
