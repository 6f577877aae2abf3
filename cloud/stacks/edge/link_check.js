// CloudFront Function (runtime cloudfront-js-2.0) of the results distribution, deployed twice
// from this one file (cloud/stacks/results.py) and run as-is by the tests (tests/e2e/edge_server.mjs).
//
// Viewer request: every request passes here. It goes through only when
//   - the path is /jobs/<job_id>/<report|compressed|train>/<file...>, each segment plain
//     (letters, digits, '_', '-', '.', never starting with '.': no '..' can climb out), and
//   - the query carries exp=<Unix seconds> not yet past and sig=<base64url HMAC-SHA256 of
//     "/jobs/<job_id>/\n<exp>"> under the secret in the associated KeyValueStore
//     (spaceport/cloud/links.py signs with the same message and encoding).
// Anything else gets 403.
//
// Viewer response: the Content-Type of the page and the engine, set from the file name. The job
// writes its report through SageMaker's output upload, which does not type the objects, and a
// browser renders HTML and runs a module script only when the type says so.
import crypto from 'crypto';
import cf from 'cloudfront';

const kvs = cf.kvs();
const SECRET_KEY = 'link-secret';
const RESULT_PATH = /^\/jobs\/(sp-[a-z0-9-]{1,61})\/(report|compressed|train)(\/[A-Za-z0-9_-][A-Za-z0-9._-]*)+$/;
const FORBIDDEN = {statusCode: 403, statusDescription: 'Forbidden'};
const TYPES = {html: 'text/html; charset=utf-8', mjs: 'text/javascript', js: 'text/javascript',
               json: 'application/json', css: 'text/css', png: 'image/png', webp: 'image/webp'};

function sameText(a, b) {
    // Constant time in the length of the expected signature: no early exit on the first difference.
    if (a.length !== b.length) {
        return false;
    }
    let diff = 0;
    for (let i = 0; i < a.length; i++) {
        diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
    }
    return diff === 0;
}

function typed(event) {
    const response = event.response;
    const ext = event.request.uri.split('.').pop().toLowerCase();
    if (response.statusCode === 200 && TYPES[ext]) {
        response.headers['content-type'] = {value: TYPES[ext]};
    }
    return response;
}

async function handler(event) {
    if (event.context.eventType === 'viewer-response') {
        return typed(event);
    }
    const request = event.request;
    const match = RESULT_PATH.exec(request.uri);
    const query = request.querystring;
    if (!match || !query.exp || !query.sig) {
        return FORBIDDEN;
    }
    const exp = query.exp.value;
    if (!/^[0-9]{1,12}$/.test(exp) || Number(exp) * 1000 < Date.now()) {
        return FORBIDDEN;
    }
    let secret;
    try {
        secret = await kvs.get(SECRET_KEY);
    } catch (err) {
        return FORBIDDEN;
    }
    const expected = crypto.createHmac('sha256', secret)
        .update('/jobs/' + match[1] + '/\n' + exp).digest('base64url');
    if (!sameText(query.sig.value, expected)) {
        return FORBIDDEN;
    }
    return request;
}
