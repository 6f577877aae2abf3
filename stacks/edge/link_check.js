// CloudFront Function (runtime cloudfront-js-2.0), viewer request: every request to the results
// distribution passes here. It lets a request through only when
//   - the path is /jobs/<job_id>/<report|compressed|train>/<file...>, each segment plain
//     (letters, digits, '_', '-', '.', never starting with '.': no '..' can climb out), and
//   - the query carries exp=<Unix seconds> not yet past and sig=<base64url HMAC-SHA256 of
//     "/jobs/<job_id>/\n<exp>"> under the secret in the associated KeyValueStore.
// Anything else gets 403. The same file is run by the tests (tests/e2e/edge_server.mjs), and
// spaceport/aws/links.py signs with the same message and encoding.
import crypto from 'crypto';
import cf from 'cloudfront';

const kvs = cf.kvs();
const SECRET_KEY = 'link-secret';
const RESULT_PATH = /^\/jobs\/(sp-[a-z0-9-]{1,61})\/(report|compressed|train)(\/[A-Za-z0-9_-][A-Za-z0-9._-]*)+$/;
const FORBIDDEN = {statusCode: 403, statusDescription: 'Forbidden'};

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

async function handler(event) {
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
