// A local stand-in for the results distribution: every request goes through the real CloudFront
// Function file (cloud/stacks/edge/link_check.js, the file the stack deploys) as a viewer-request event,
// then, when the function returns the request, is served from a folder laid out like the data
// bucket (keys as paths), its response passed through the same file as a viewer-response event.
//
//   node edge_server.mjs FUNCTION.js ROOT SECRET_FILE
//
// SECRET_FILE is the KeyValueStore import file ({"data": [{"key", "value"}]}) the stack imports
// the function's KeyValueStore from. Prints {"port": N} first, then one JSON line per request
// ({method, uri, query, status, type}) so the test sees every request the browser made.
//
// The function file is an ES module with two imports the CloudFront runtime provides ('crypto',
// 'cloudfront'); they are bound here to node's crypto (createHmac and digest('base64url') as the
// CloudFront runtime has them) and to a KeyValueStore handle over the import file. Nothing else in
// the file is changed.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const [functionPath, root, secretFile] = process.argv.slice(2);
const source = fs.readFileSync(functionPath, 'utf8');
const IMPORT = /^import (\w+) from '([\w-]+)';$/gm;
const store = Object.fromEntries(JSON.parse(fs.readFileSync(secretFile, 'utf8')).data.map(d => [d.key, d.value]));
const modules = {
    crypto,
    cloudfront: {
        kvs: () => ({
            // CloudFront's get() rejects when the key is absent (functions-custom-methods).
            get: async (key) => {
                if (!(key in store)) throw new Error(`key ${key} not found`);
                return store[key];
            },
        }),
    },
};
const imports = [...source.matchAll(IMPORT)];
for (const [, , mod] of imports) {
    if (!(mod in modules)) throw new Error(`the function imports ${mod}, which CloudFront Functions does not provide`);
}
const handler = new Function(...imports.map(m => m[1]), source.replace(IMPORT, '') + '\nreturn handler;')(
    ...imports.map(m => modules[m[2]]));

function cloudfrontEvent(req) {
    // The viewer-request event shape of functions-event-structure: lower-case header names,
    // query and headers as {name: {value}} (repeated names also get multiValue).
    // The path exactly as sent (no dot-segment folding), as the function must judge it.
    const [uri, query = ''] = req.url.split(/\?(.*)/s);
    const querystring = {};
    for (const [name, value] of new URLSearchParams(query)) {
        if (querystring[name]) {
            querystring[name].multiValue = [...(querystring[name].multiValue || [{value: querystring[name].value}]), {value}];
        } else {
            querystring[name] = {value};
        }
    }
    const headers = {};
    for (const [name, value] of Object.entries(req.headers)) headers[name.toLowerCase()] = {value: String(value)};
    return {
        version: '1.0',
        context: {eventType: 'viewer-request'},
        viewer: {ip: req.socket.remoteAddress},
        request: {method: req.method, uri, querystring, headers, cookies: {}},
    };
}

// S3's type for an object uploaded without one (what SageMaker's output upload leaves): the
// viewer-response event must set the real types, or the browser neither renders nor runs them.
const UNTYPED = 'binary/octet-stream';

const server = http.createServer(async (req, res) => {
    const event = cloudfrontEvent(req);
    let status, type;
    try {
        const out = await handler(event);
        if (out.statusCode) {
            status = out.statusCode;
            res.writeHead(status, {'content-type': 'text/plain'});
            res.end(out.statusDescription || '');
        } else {
            // The origin: the object at the (decoded) key, as S3 would serve it.
            const file = path.join(root, decodeURIComponent(out.uri));
            if (!file.startsWith(path.resolve(root) + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
                status = 404;
                res.writeHead(status);
                res.end();
            } else {
                status = 200;
                const response = await handler({
                    ...event, context: {eventType: 'viewer-response'},
                    response: {statusCode: 200, statusDescription: 'OK', headers: {'content-type': {value: UNTYPED}}},
                });
                const headers = Object.fromEntries(Object.entries(response.headers).map(([k, v]) => [k, v.value]));
                type = headers['content-type'];
                res.writeHead(response.statusCode, headers);
                fs.createReadStream(file).pipe(res);
            }
        }
    } catch (err) {
        // A function that throws is a 503 at CloudFront.
        status = 503;
        res.writeHead(status);
        res.end(String(err));
    }
    const [uri, query = ''] = req.url.split(/\?(.*)/s);
    console.log(JSON.stringify({method: req.method, uri, query, status, type}));
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({port: server.address().port})));
