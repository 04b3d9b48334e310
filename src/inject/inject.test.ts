import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { injectText, uninjectText } from './inject.js';
import { defaultImage, podFacts, proxyEnv, sidecarName } from './sidecar-spec.js';

const options = { image: defaultImage, tokenAudience: 'isthmus' };

const deployment = (podSpec: string) => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
${podSpec}`;

type Obj = Record<string, unknown>;
const podSpecOf = (text: string) => ((((parse(text) as Obj).spec as Obj).template as Obj).spec as Obj);

describe('podFacts', () => {
  it.each<[string, unknown, unknown, string, { port: number; protocol: string }[]]>([
    ['the app.kubernetes.io/name label first', { 'app.kubernetes.io/name': 'cart', app: 'other' }, { containers: [{ ports: [{ containerPort: 8080 }] }] }, 'cart', [{ port: 8080, protocol: 'http' }]],
    ['then the app label', { app: 'cart' }, {}, 'cart', []],
    ['else the workload name', {}, {}, 'web', []],
    ['an empty label does not count', { app: '' }, {}, 'web', []],
    ['every TCP port of every app container, in order', {}, { containers: [{ ports: [{ containerPort: 53, protocol: 'UDP' }] }, { ports: [{ containerPort: 9000 }, { containerPort: 9000, name: 'again' }] }] }, 'web', [{ port: 9000, protocol: 'http' }]],
    ['what each speaks, from its name as for a Service port', {}, { containers: [{ ports: [{ name: 'http', containerPort: 8080 }, { name: 'grpc-api', containerPort: 9090 }] }, { ports: [{ name: 'redis', containerPort: 6379 }] }] }, 'web',
      [{ port: 8080, protocol: 'http' }, { port: 9090, protocol: 'h2c' }, { port: 6379, protocol: 'tcp' }]],
  ])('%s', (_, labels, spec, service, appPorts) => {
    expect(podFacts('web', labels, spec)).toEqual({ service, appPorts });
  });
});

describe('injectText', () => {
  const text = deployment(`      initContainers:
        - name: migrate # first the schema
          image: migrate:1
      containers:
        - name: web
          image: web:1
          ports:
            - containerPort: 8080
          env:
            - name: LOG_LEVEL
              value: info
`);

  it('adds the sidecar as the first init container, the proxy variables after the app\'s own, and the volumes', () => {
    const { text: injected, changed } = injectText(text, 'app.yaml', options);
    expect(changed).toEqual(['Deployment shop/web (app.yaml document 1, line 1)']);
    const spec = podSpecOf(injected);
    const init = spec.initContainers as Obj[];
    expect(init.map((c) => c.name)).toEqual([sidecarName, 'migrate']);
    expect(init[0]).toMatchObject({ restartPolicy: 'Always', image: defaultImage });
    expect(init[0]?.args).toEqual(['sidecar', '--config', '/etc/isthmus-sidecar/sidecar.yaml', '--namespace', '$(POD_NAMESPACE)',
      '--service', 'web', '--zone', '$(ISTHMUS_ZONE)', '--inbound-app', '127.0.0.1:8080']);
    const env = (spec.containers as Obj[])[0]?.env as Obj[];
    expect(env).toEqual([{ name: 'LOG_LEVEL', value: 'info' }, ...proxyEnv()]);
    expect((spec.volumes as Obj[]).map((v) => v.name)).toEqual(['isthmus-sidecar-config', 'isthmus-token', 'isthmus-state']);
    expect(injected).toContain('- name: migrate # first the schema');
  });

  it('a sidecar fronts every app port: the first as inbound.app, each other one as --inbound-port with what it speaks', () => {
    const multi = deployment(`      containers:
        - name: web
          image: web:1
          ports:
            - name: grpc
              containerPort: 9090
            - name: http-admin
              containerPort: 8081
        - name: cache
          image: redis:7
          ports:
            - name: redis
              containerPort: 6379
`);
    const init = podSpecOf(injectText(multi, 'app.yaml', options).text).initContainers as Obj[];
    expect((init[0]?.args as string[]).slice(9)).toEqual(['--inbound-app', '127.0.0.1:9090', '--inbound-app-protocol', 'h2c', '--inbound-port', '8081', '--inbound-port', '6379/tcp']);
  });

  it('a Service in the same input whose ports differ from the container ports: each port is listed under the Service port callers name', () => {
    const withService = `${deployment(`      containers:
        - name: web
          image: web:1
          ports:
            - name: http
              containerPort: 8080
            - name: grpc
              containerPort: 9090
            - name: redis
              containerPort: 6379
`)}---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
    - {name: http, port: 80, targetPort: 8080}
    - {name: grpc-api, port: 9000, targetPort: grpc}
    - {name: cache, port: 6379, appProtocol: redis}
---
apiVersion: v1
kind: Service
metadata:
  name: other
  namespace: shop
spec:
  selector: {app: other}
  ports:
    - {port: 7000, targetPort: 6379}
`;
    const init = podSpecOf(injectText(withService, 'app.yaml', options).text.split('---')[0] as string).initContainers as Obj[];
    expect((init[0]?.args as string[]).slice(9)).toEqual(['--inbound-app', '127.0.0.1:8080', '--inbound-port', '9000=9090/h2c', '--inbound-port', '6379/tcp']);
  });

  it('the pod annotation isthmus.dev/access-log turns the sidecar\'s access log on, to its container log', () => {
    const annotated = text.replace('      labels: {app: web}\n', '      labels: {app: web}\n      annotations:\n        isthmus.dev/access-log: /dev/stdout\n');
    const init = podSpecOf(injectText(annotated, 'app.yaml', options).text).initContainers as Obj[];
    expect((init[0]?.args as string[]).slice(-2)).toEqual(['--access-log', '/dev/stdout']);
    // Without the annotation: no access log.
    expect(podSpecOf(injectText(text, 'app.yaml', options).text).initContainers as Obj[]).not.toContainEqual(expect.objectContaining({ args: expect.arrayContaining(['--access-log']) }));
    // A file: the sidecar's root file system is read-only, so only its container log is offered.
    const toFile = text.replace('      labels: {app: web}\n', '      labels: {app: web}\n      annotations:\n        isthmus.dev/access-log: /var/log/access.log\n');
    expect(() => injectText(toFile, 'app.yaml', options)).toThrow(expect.objectContaining({
      code: 'ISTHMUS_ERR_INJECT_UNSUPPORTED', message: expect.stringMatching(/Deployment shop\/web .*isthmus\.dev\/access-log is "\/var\/log\/access\.log": give \/dev\/stdout or \/dev\/stderr/),
    }));
  });

  it('the pod annotation isthmus.dev/upgrade-to-http2 sends the app\'s HTTP/1.1 requests to other sidecars as HTTP/2; another value is refused', () => {
    const annotate = (value: string) => text.replace('      labels: {app: web}\n', `      labels: {app: web}\n      annotations:\n        isthmus.dev/upgrade-to-http2: ${value}\n`);
    const argsOf = (input: string) => (podSpecOf(injectText(input, 'app.yaml', options).text).initContainers as Obj[])[0]?.args as string[];
    expect(argsOf(annotate('"true"')).slice(-1)).toEqual(['--upgrade-to-http2']);
    expect(argsOf(annotate('"false"'))).not.toContain('--upgrade-to-http2');
    expect(argsOf(text)).not.toContain('--upgrade-to-http2');
    expect(() => injectText(annotate('"yes"'), 'app.yaml', options)).toThrow(expect.objectContaining({
      code: 'ISTHMUS_ERR_INJECT_UNSUPPORTED', message: expect.stringMatching(/Deployment shop\/web .*isthmus\.dev\/upgrade-to-http2 is "yes": give "true" or "false"/),
    }));
  });

  it('the token volume asks for the audience given', () => {
    const spec = podSpecOf(injectText(text, 'app.yaml', { ...options, tokenAudience: 'mesh.example.org' }).text);
    expect(JSON.stringify(spec.volumes)).toContain('"audience":"mesh.example.org"');
  });

  it('is idempotent, and uninject gives the text back byte for byte', () => {
    const once = injectText(text, 'app.yaml', options);
    const twice = injectText(once.text, 'app.yaml', options);
    expect(twice.text).toBe(once.text);
    expect(twice.unchanged).toEqual(once.changed);
    expect(uninjectText(once.text, 'app.yaml').text).toBe(text);
    expect(uninjectText(text, 'app.yaml')).toEqual({ text, changed: [], unchanged: ['Deployment shop/web (app.yaml document 1, line 1)'] });
  });

  it('leaves documents without a workload, and an empty input, untouched', () => {
    const other = '# a Service\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n---\n';
    expect(injectText(other, 'svc.yaml', options)).toEqual({ text: other, changed: [], unchanged: [] });
    expect(injectText('', 'empty.yaml', options).text).toBe('');
  });

  it('uninject keeps what the user had besides: a volume or env the user wrote stays', () => {
    const injected = injectText(text, 'app.yaml', options).text;
    const spec = podSpecOf(uninjectText(injected, 'app.yaml').text);
    expect((spec.containers as Obj[])[0]?.env).toEqual([{ name: 'LOG_LEVEL', value: 'info' }]);
    expect((spec.initContainers as Obj[]).map((c) => c.name)).toEqual(['migrate']);
  });

  it('the output parses to as many documents as the input', () => {
    const two = `${text}---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - name: a\n      image: a\n`;
    const injected = injectText(two, 'two.yaml', options);
    expect(injected.changed).toHaveLength(2);
    expect(parseAllDocuments(injected.text)).toHaveLength(2);
  });
});

describe('what inject refuses, naming the workload, document and line', () => {
  it.each<[string, string, RegExp]>([
    ['a flow-style container list', deployment('      containers: [{name: web, image: web:1}]\n'), /Deployment shop\/web \(app\.yaml document 1, line 1\): containers must be a block list/],
    ['an alias where inject adds', deployment('      containers:\n        - name: web\n          image: web:1\n      volumes: *vols\n').replace('metadata:\n  name', 'x: &vols\n  - name: v\n    emptyDir: {}\nmetadata:\n  name'), /volumes is an alias \(\*vols\)/],
    ['a container that sets HTTP_PROXY', deployment('      containers:\n        - name: web\n          image: web:1\n          env:\n            - name: HTTP_PROXY\n              value: http://corp-proxy:3128\n'), /container web: sets HTTP_PROXY already/],
    ['a volume named like ours', deployment('      containers:\n        - name: web\n          image: web:1\n      volumes:\n        - name: isthmus-state\n          emptyDir: {}\n'), /already has a volume named isthmus-state/],
    ['no containers', deployment('      hostNetwork: true\n'), /no containers/],
  ])('%s', (_, text, message) => {
    expect(() => injectText(text, 'app.yaml', options)).toThrow(expect.objectContaining({ code: 'ISTHMUS_ERR_INJECT_UNSUPPORTED', message: expect.stringMatching(message) }));
  });

  it('YAML that does not parse, naming the document and the line', () => {
    const text = 'kind: Service\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n';
    expect(() => injectText(text, 'bad.yaml', options)).toThrow(expect.objectContaining({
      code: 'ISTHMUS_ERR_INJECT_YAML_INVALID', message: expect.stringMatching(/^bad\.yaml: document 2, line \d+: /),
    }));
    expect(() => uninjectText(text, 'bad.yaml')).toThrow(expect.objectContaining({ code: 'ISTHMUS_ERR_INJECT_YAML_INVALID' }));
  });
});
