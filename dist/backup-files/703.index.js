export const id = 703;
export const ids = [703];
export const modules = {

/***/ 3703:
/***/ ((__unused_webpack___webpack_module__, __webpack_exports__, __webpack_require__) => {

/* harmony export */ __webpack_require__.d(__webpack_exports__, {
/* harmony export */   S3Storage: () => (/* binding */ S3Storage)
/* harmony export */ });
/* unused harmony exports DEFAULT_PART_SIZE, partSizeFor, addContentMd5Middleware, restoredCopy */
/* harmony import */ var node_crypto__WEBPACK_IMPORTED_MODULE_0__ = __webpack_require__(7598);
/* harmony import */ var node_stream__WEBPACK_IMPORTED_MODULE_1__ = __webpack_require__(7075);
/* harmony import */ var _aws_sdk_client_s3__WEBPACK_IMPORTED_MODULE_6__ = __webpack_require__(3711);
/* harmony import */ var _core_errors_js__WEBPACK_IMPORTED_MODULE_2__ = __webpack_require__(3828);
/* harmony import */ var _local_js__WEBPACK_IMPORTED_MODULE_3__ = __webpack_require__(3114);
/* harmony import */ var _parts_js__WEBPACK_IMPORTED_MODULE_4__ = __webpack_require__(3495);
/* harmony import */ var _storage_js__WEBPACK_IMPORTED_MODULE_5__ = __webpack_require__(2500);







const MIB = 1024 * 1024;
const DEFAULT_PART_SIZE = 8 * MIB;
const MIN_PART_SIZE = 5 * MIB;
const MAX_PART_SIZE = 5 * 1024 * MIB;
const DELETE_BATCH = 1000;
/** Parts sent at once by default while the next one fills. */
const DEFAULT_PARTS_IN_FLIGHT = 2;
/**
 * The part size for a multipart upload: the configured size (8 MiB by default), raised for a
 * large `sizeHint` so that even 20 % more data than announced fits in 9,000 parts, leaving
 * room under S3's 10,000-part limit.
 */
function partSizeFor(sizeHint, configured = DEFAULT_PART_SIZE) {
    const forHint = sizeHint !== undefined && sizeHint > 0
        ? Math.ceil(Math.ceil((sizeHint * 1.2) / 9000) / MIB) * MIB
        : 0;
    return Math.min(MAX_PART_SIZE, Math.max(MIN_PART_SIZE, configured, forHint));
}
/**
 * Adds a Content-MD5 header to DeleteObjects requests. The SDK sends a CRC32 checksum
 * instead, which Swift, MinIO and GCS do not accept in its place.
 */
function addContentMd5Middleware(client) {
    client.middlewareStack.add((next, context) => async (args) => {
        const request = args.request;
        if (context.commandName === 'DeleteObjectsCommand' && request.headers !== undefined) {
            const body = request.body;
            if (typeof body === 'string' || body instanceof Uint8Array) {
                const hasMd5 = Object.keys(request.headers).some((name) => name.toLowerCase() === 'content-md5');
                if (!hasMd5)
                    request.headers['content-md5'] = (0,node_crypto__WEBPACK_IMPORTED_MODULE_0__.createHash)('md5').update(body).digest('base64');
            }
        }
        return next(args);
    }, { step: 'build', name: 'contentMd5ForDeleteObjects', override: true });
}
const NETWORK_CODES = new Set([
    'ECONNREFUSED',
    'ECONNRESET',
    'ENOTFOUND',
    'EAI_AGAIN',
    'ETIMEDOUT',
    'EPIPE',
    'EHOSTUNREACH',
    'ENETUNREACH',
    'ECONNABORTED',
    'TimeoutError',
    'RequestTimeout',
]);
function networkCode(error) {
    if (typeof error !== 'object' || error === null)
        return undefined;
    const e = error;
    if (e.code !== undefined && NETWORK_CODES.has(e.code))
        return e.code;
    if (e.name !== undefined &&
        NETWORK_CODES.has(e.name) &&
        e.$metadata?.httpStatusCode === undefined) {
        return e.name;
    }
    if (Array.isArray(e.errors)) {
        for (const inner of e.errors) {
            const code = networkCode(inner);
            if (code !== undefined)
                return code;
        }
    }
    // Errors from another realm reach here flattened into the message of a wrapper.
    if (e.$metadata?.httpStatusCode === undefined && typeof e.message === 'string') {
        const match = /\b(E[A-Z]{4,})\b/.exec(e.message);
        if (match !== null && NETWORK_CODES.has(match[1]))
            return match[1];
    }
    return undefined;
}
function codeOf(error) {
    if (typeof error !== 'object' || error === null)
        return String(error);
    const e = error;
    return e.name ?? e.code ?? 'Error';
}
function statusOf(error) {
    return typeof error === 'object' && error !== null
        ? error.$metadata?.httpStatusCode
        : undefined;
}
/**
 * What S3's `x-amz-restore` header says of an archived object: `ongoing-request="false"` once
 * the temporary copy is readable, `"true"` while the restore request runs.
 */
function restoredCopy(header) {
    if (!header)
        return undefined;
    const ongoing = /ongoing-request="(true|false)"/.exec(header);
    return ongoing ? ongoing[1] === 'false' : undefined;
}
function isNotFound(error) {
    const code = codeOf(error);
    return (code === 'NoSuchKey' ||
        code === 'NotFound' ||
        (statusOf(error) === 404 && code !== 'NoSuchBucket'));
}
/** Why a per-key delete error is Object Lock's doing, or undefined when it is not. */
function lockReason(code, message) {
    if (code === 'ObjectLocked' || /object ?lock/i.test(code))
        return message || code;
    if (code === 'AccessDenied' && /retention|legal hold|object ?lock|worm/i.test(message)) {
        return message;
    }
    return undefined;
}
const PERMISSION = {
    write: 's3:PutObject',
    read: 's3:GetObject',
    list: 's3:ListBucket',
    delete: 's3:DeleteObject',
    versioning: 's3:GetBucketVersioning',
};
const VERB = {
    write: 'writing',
    read: 'reading',
    list: 'listing',
    delete: 'deleting',
    versioning: 'reading the versioning of',
};
/** The endpoint URL without any user:password part, for messages. */
function safeEndpoint(endpoint) {
    try {
        const url = new URL(endpoint);
        url.username = '';
        url.password = '';
        return url.toString().replace(/\/$/, '');
    }
    catch {
        return '(invalid endpoint)';
    }
}
/**
 * An S3 bucket and prefix as a store. Streams are cut into parts by PartWriter and sent as a
 * multipart upload (`upload`), so memory use is bounded by part size × (queue size + 1); a
 * failed upload is aborted and checked to be gone. When the store fails during `putStream`,
 * the body is destroyed so its producer stops.
 */
class S3Storage {
    bucket;
    settings;
    logger;
    description;
    client;
    prefix;
    endpointLabel;
    region;
    conditionalPutUnsupported = false;
    constructor(bucket, prefix, settings, logger) {
        this.bucket = bucket;
        this.settings = settings;
        this.logger = logger;
        this.prefix = prefix.replace(/^\/+|\/+$/g, '');
        this.region =
            settings.region || process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || 'us-east-1';
        const config = {
            region: this.region,
            requestHandler: { connectionTimeout: 10_000, socketTimeout: 120_000 },
        };
        if (settings.endpoint) {
            let url;
            try {
                url = new URL(settings.endpoint);
            }
            catch {
                throw new _core_errors_js__WEBPACK_IMPORTED_MODULE_2__/* .ConfigurationError */ .j1(`The S3 endpoint '${safeEndpoint(settings.endpoint)}' is not a URL; give one like https://s3.example.com or http://127.0.0.1:9000.`);
            }
            if (url.protocol !== 'http:' && url.protocol !== 'https:') {
                throw new _core_errors_js__WEBPACK_IMPORTED_MODULE_2__/* .ConfigurationError */ .j1(`The S3 endpoint '${safeEndpoint(settings.endpoint)}' must start with https:// or http://.`);
            }
            this.endpointLabel = safeEndpoint(settings.endpoint);
            config.endpoint = settings.endpoint;
            config.forcePathStyle = settings.forcePathStyle ?? true;
            config.requestChecksumCalculation = 'WHEN_REQUIRED';
            config.responseChecksumValidation = 'WHEN_REQUIRED';
        }
        else {
            this.endpointLabel = `AWS S3 in ${this.region}`;
            if (settings.forcePathStyle !== undefined)
                config.forcePathStyle = settings.forcePathStyle;
        }
        if (settings.credentials)
            config.credentials = settings.credentials;
        this.client = new _aws_sdk_client_s3__WEBPACK_IMPORTED_MODULE_6__/* .S3Client */ .YxF(config);
        addContentMd5Middleware(this.client);
        const where = this.prefix === '' ? `s3://${bucket}` : `s3://${bucket}/${this.prefix}`;
        this.description = settings.endpoint
            ? `${where} (endpoint ${this.endpointLabel})`
            : `${where} (${this.endpointLabel})`;
    }
    fullKey(key) {
        if (key === '' || key.startsWith('/')) {
            throw new Error(`Invalid storage key '${key}': keys are non-empty and relative to the prefix.`);
        }
        return this.prefix === '' ? key : `${this.prefix}/${key}`;
    }
    relativeKey(fullKey) {
        return this.prefix === '' ? fullKey : fullKey.slice(this.prefix.length + 1);
    }
    location(key) {
        return `s3://${this.bucket}/${this.fullKey(key)}`;
    }
    /** Turns an SDK error into one a person can act on; never includes credentials. */
    translate(error, action, key) {
        if (error instanceof _core_errors_js__WEBPACK_IMPORTED_MODULE_2__/* .ConfigurationError */ .j1 || error instanceof _storage_js__WEBPACK_IMPORTED_MODULE_5__/* .NotFoundError */ .m_)
            return error;
        const code = codeOf(error);
        const status = statusOf(error);
        const target = key === undefined ? `bucket '${this.bucket}'` : this.location(key);
        const network = networkCode(error);
        if (network !== undefined) {
            const message = error instanceof Error ? error.message : String(error);
            return new Error(`Cannot reach the S3 endpoint ${this.endpointLabel} while ${VERB[action]} ${target}: ${network}${message && message !== network ? ` (${message})` : ''}`, { cause: error });
        }
        if (code === 'NoSuchBucket') {
            return new _core_errors_js__WEBPACK_IMPORTED_MODULE_2__/* .ConfigurationError */ .j1(`Bucket '${this.bucket}' does not exist (endpoint ${this.endpointLabel}). Create it, or correct the bucket in the storage location.`);
        }
        if (code === 'CredentialsProviderError') {
            return new _core_errors_js__WEBPACK_IMPORTED_MODULE_2__/* .ConfigurationError */ .j1(`No AWS credentials were found for bucket '${this.bucket}'. Provide them through the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), a profile, or OIDC with aws-actions/configure-aws-credentials.`);
        }
        if (code === 'InvalidAccessKeyId') {
            return new _core_errors_js__WEBPACK_IMPORTED_MODULE_2__/* .ConfigurationError */ .j1(`The access key ID is not known to the endpoint ${this.endpointLabel} (InvalidAccessKeyId) while ${VERB[action]} ${target}. Check the credentials for bucket '${this.bucket}'.`);
        }
        if (code === 'SignatureDoesNotMatch') {
            return new _core_errors_js__WEBPACK_IMPORTED_MODULE_2__/* .ConfigurationError */ .j1(`The secret access key does not match the access key ID (SignatureDoesNotMatch) while ${VERB[action]} ${target} at ${this.endpointLabel}. Check the credentials for bucket '${this.bucket}'.`);
        }
        if (code === 'InvalidObjectState' && key !== undefined) {
            // S3 answers 403 for an object it keeps in an archive class: not a permission problem.
            const e = error;
            const where = e.AccessTier
                ? `the Intelligent-Tiering ${e.AccessTier} tier`
                : e.StorageClass
                    ? `the ${e.StorageClass} storage class`
                    : 'an archive storage class or tier';
            return new _core_errors_js__WEBPACK_IMPORTED_MODULE_2__/* .ConfigurationError */ .j1(`${target} is in ${where} and cannot be read until a restore request makes it readable (InvalidObjectState). ` +
                `Request one with aws s3api restore-object --bucket ${this.bucket} --key ${this.fullKey(key)} --restore-request '{"Days":2}' ` +
                `(for an Intelligent-Tiering tier, --restore-request '{}'), wait for it (3 to 5 hours from GLACIER, up to 12 from DEEP_ARCHIVE with the Standard tier), and run again.`);
        }
        if (code === 'AccessDenied' || code === 'Forbidden' || status === 403) {
            return new _core_errors_js__WEBPACK_IMPORTED_MODULE_2__/* .ConfigurationError */ .j1(`Access denied (${code}) while ${VERB[action]} ${target} at ${this.endpointLabel}. Check the credentials and that they grant ${PERMISSION[action]} on bucket '${this.bucket}'.`);
        }
        const message = error instanceof Error ? error.message : String(error);
        return new Error(`S3 failed while ${VERB[action]} ${target} (endpoint ${this.endpointLabel}): ${code}${status ? ` [HTTP ${status}]` : ''}: ${message}`, { cause: error });
    }
    putStream(key, body, options = {}) {
        return (0,_parts_js__WEBPACK_IMPORTED_MODULE_4__/* .putInParts */ .n)(this.upload(key, options), body, options);
    }
    /**
     * A multipart upload of `key`, begun with its first part; a body that fits in one part is
     * stored with one PUT instead. A failed upload is aborted and checked to be gone.
     */
    async upload(key, options = {}) {
        const fullKey = this.fullKey(key);
        const contentType = options.contentType ?? 'application/octet-stream';
        const previousETag = await this.currentETag(fullKey);
        // In-flight requests are cancelled when the upload is aborted.
        const abort = new AbortController();
        const { signal } = abort;
        const requests = new Set();
        const track = (request) => {
            requests.add(request);
            const forget = () => requests.delete(request);
            request.then(forget, forget);
            return request;
        };
        const etags = [];
        let creating;
        let completing = false;
        return {
            partSize: partSizeFor(options.sizeHint, this.settings.partSize),
            inFlight: this.settings.queueSize ?? DEFAULT_PARTS_IN_FLIGHT,
            sendPart: async ({ number, data }) => {
                try {
                    creating ??= track(this.createMultipartUpload(fullKey, contentType, signal));
                    const uploadId = await creating;
                    const sent = await track(this.client.send(new _aws_sdk_client_s3__WEBPACK_IMPORTED_MODULE_6__/* .UploadPartCommand */ .iVK({
                        Bucket: this.bucket,
                        Key: fullKey,
                        UploadId: uploadId,
                        PartNumber: number,
                        Body: data,
                        ContentLength: data.length,
                    }), { abortSignal: signal }));
                    if (!sent.ETag)
                        throw new Error(`the store returned no ETag for part ${number}`);
                    etags[number - 1] = sent.ETag;
                }
                catch (error) {
                    throw this.translate(error, 'write', key);
                }
            },
            complete: async (whole) => {
                completing = true;
                try {
                    if (whole !== undefined)
                        await this.putWhole(fullKey, contentType, whole);
                    else
                        await this.completeMultipartUpload(fullKey, await creating, etags);
                }
                catch (error) {
                    throw this.translate(error, 'write', key);
                }
            },
            abort: async () => {
                abort.abort();
                await Promise.allSettled([...requests]);
                await this.abortMultipartUpload(fullKey, await creating?.catch(() => undefined));
                await this.cleanUpFailedUpload(key, fullKey, previousETag, completing);
            },
        };
    }
    async createMultipartUpload(fullKey, contentType, abortSignal) {
        const created = await this.client.send(new _aws_sdk_client_s3__WEBPACK_IMPORTED_MODULE_6__/* .CreateMultipartUploadCommand */ .nG4({
            Bucket: this.bucket,
            Key: fullKey,
            ContentType: contentType,
        }), { abortSignal });
        if (!created.UploadId)
            throw new Error('the store returned no upload id');
        return created.UploadId;
    }
    /** A body smaller than one part, in one PUT. */
    async putWhole(fullKey, contentType, body) {
        await this.client.send(new _aws_sdk_client_s3__WEBPACK_IMPORTED_MODULE_6__/* .PutObjectCommand */ .wKZ({
            Bucket: this.bucket,
            Key: fullKey,
            Body: body,
            ContentLength: body.length,
            ContentType: contentType,
        }));
    }
    async completeMultipartUpload(fullKey, uploadId, etags) {
        await this.client.send(new _aws_sdk_client_s3__WEBPACK_IMPORTED_MODULE_6__/* .CompleteMultipartUploadCommand */ .Gym({
            Bucket: this.bucket,
            Key: fullKey,
            UploadId: uploadId,
            MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
        }));
    }
    /** Drops the parts of a failed upload, if one was begun (best effort). */
    async abortMultipartUpload(fullKey, uploadId) {
        if (uploadId === undefined)
            return;
        await this.client
            .send(new _aws_sdk_client_s3__WEBPACK_IMPORTED_MODULE_6__/* .AbortMultipartUploadCommand */ .tfP({
            Bucket: this.bucket,
            Key: fullKey,
            UploadId: uploadId,
        }))
            .catch(() => undefined);
    }
    /** The ETag of the object at `fullKey` before a write, or undefined (missing or unreadable). */
    async currentETag(fullKey) {
        try {
            const head = await this.client.send(new _aws_sdk_client_s3__WEBPACK_IMPORTED_MODULE_6__/* .HeadObjectCommand */ .l81({ Bucket: this.bucket, Key: fullKey }));
            return head.ETag ?? '';
        }
        catch (error) {
            if (!isNotFound(error))
                this.logger.debug(`HeadObject ${fullKey} before upload: ${codeOf(error)}`);
            return undefined;
        }
    }
    /**
     * After a failed upload: aborts any multipart upload left for the key, checks that none
     * remains, and removes an object the failed write may have completed. Problems are logged,
     * since the caller is already failing with the cause.
     */
    async cleanUpFailedUpload(key, fullKey, previousETag, mayHaveWritten) {
        const where = this.location(key);
        try {
            for (let round = 0; round < 3; round++) {
                const uploads = await this.multipartUploads(fullKey);
                if (uploads.length === 0)
                    break;
                if (round === 2) {
                    this.logger.warning(`A multipart upload for ${where} is still present after aborting it (upload ids ${uploads.join(', ')}); a bucket lifecycle rule with AbortIncompleteMultipartUpload removes such leftovers.`);
                    break;
                }
                for (const uploadId of uploads) {
                    await this.client.send(new _aws_sdk_client_s3__WEBPACK_IMPORTED_MODULE_6__/* .AbortMultipartUploadCommand */ .tfP({
                        Bucket: this.bucket,
                        Key: fullKey,
                        UploadId: uploadId,
                    }));
                    this.logger.debug(`Aborted multipart upload ${uploadId} of ${where}.`);
                }
            }
        }
        catch (error) {
            this.logger.warning(`Could not check for an unfinished multipart upload of ${where}: ${this.translate(error, 'list').message}. Parts may be left behind; a bucket lifecycle rule with AbortIncompleteMultipartUpload removes them.`);
        }
        if (!mayHaveWritten)
            return;
        try {
            const etag = await this.currentETag(fullKey);
            if (etag !== undefined && etag !== previousETag) {
                await this.client.send(new _aws_sdk_client_s3__WEBPACK_IMPORTED_MODULE_6__/* .DeleteObjectCommand */ .k4j({ Bucket: this.bucket, Key: fullKey }));
                this.logger.warning(`Removed ${where}, written although the upload reported a failure.`);
            }
        }
        catch (error) {
            this.logger.warning(`Could not make sure nothing was left at ${where}: ${this.translate(error, 'delete').message}`);
        }
    }
    /** Upload ids of the multipart uploads in progress for exactly `fullKey`. */
    async multipartUploads(fullKey) {
        const ids = [];
        let keyMarker;
        let uploadIdMarker;
        for (;;) {
            const page = await this.client.send(new _aws_sdk_client_s3__WEBPACK_IMPORTED_MODULE_6__/* .ListMultipartUploadsCommand */ .mo2({
                Bucket: this.bucket,
                Prefix: fullKey,
                KeyMarker: keyMarker,
                UploadIdMarker: uploadIdMarker,
            }));
            for (const upload of page.Uploads ?? []) {
                if (upload.Key === fullKey && upload.UploadId)
                    ids.push(upload.UploadId);
            }
            if (!page.IsTruncated)
                return ids;
            keyMarker = page.NextKeyMarker;
            uploadIdMarker = page.NextUploadIdMarker;
            if (keyMarker === undefined && uploadIdMarker === undefined)
                return ids;
        }
    }
    async putBytes(key, data, options = {}) {
        const body = typeof data === 'string' ? Buffer.from(data) : data;
        const conditional = options.ifNoneMatch === true && !this.conditionalPutUnsupported;
        if (options.ifNoneMatch && !conditional && (await this.head(key)) !== undefined) {
            throw new _local_js__WEBPACK_IMPORTED_MODULE_3__/* .KeyExistsError */ .G(key);
        }
        try {
            await this.client.send(new _aws_sdk_client_s3__WEBPACK_IMPORTED_MODULE_6__/* .PutObjectCommand */ .wKZ({
                Bucket: this.bucket,
                Key: this.fullKey(key),
                Body: body,
                ContentLength: body.length,
                ContentMD5: (0,node_crypto__WEBPACK_IMPORTED_MODULE_0__.createHash)('md5').update(body).digest('base64'),
                ContentType: options.contentType,
                IfNoneMatch: conditional ? '*' : undefined,
            }));
        }
        catch (error) {
            if (conditional && (codeOf(error) === 'PreconditionFailed' || statusOf(error) === 412)) {
                throw new _local_js__WEBPACK_IMPORTED_MODULE_3__/* .KeyExistsError */ .G(key);
            }
            if (conditional && (codeOf(error) === 'NotImplemented' || statusOf(error) === 501)) {
                // Some S3-compatible stores (Swift s3api among them) refuse If-None-Match on PUT:
                // check for the key first instead, which is enough for keys written once.
                this.conditionalPutUnsupported = true;
                this.logger.debug(`${this.endpointLabel} does not support conditional writes; checking for existing keys first.`);
                return this.putBytes(key, data, options);
            }
            throw this.translate(error, 'write', key);
        }
    }
    async getStream(key, options = {}) {
        try {
            const response = await this.client.send(new _aws_sdk_client_s3__WEBPACK_IMPORTED_MODULE_6__/* .GetObjectCommand */ .jLs({
                Bucket: this.bucket,
                Key: this.fullKey(key),
                Range: options.start ? `bytes=${options.start}-` : undefined,
            }));
            if (!(response.Body instanceof node_stream__WEBPACK_IMPORTED_MODULE_1__.Readable)) {
                throw new Error(`The S3 client returned no readable body for ${this.location(key)}.`);
            }
            return response.Body;
        }
        catch (error) {
            if (isNotFound(error))
                throw new _storage_js__WEBPACK_IMPORTED_MODULE_5__/* .NotFoundError */ .m_(key);
            throw this.translate(error, 'read', key);
        }
    }
    async getBytes(key) {
        try {
            const response = await this.client.send(new _aws_sdk_client_s3__WEBPACK_IMPORTED_MODULE_6__/* .GetObjectCommand */ .jLs({ Bucket: this.bucket, Key: this.fullKey(key) }));
            if (response.Body === undefined)
                return Buffer.alloc(0);
            return Buffer.from(await response.Body.transformToByteArray());
        }
        catch (error) {
            if (isNotFound(error))
                return undefined;
            throw this.translate(error, 'read', key);
        }
    }
    async head(key) {
        try {
            const response = await this.client.send(new _aws_sdk_client_s3__WEBPACK_IMPORTED_MODULE_6__/* .HeadObjectCommand */ .l81({ Bucket: this.bucket, Key: this.fullKey(key) }));
            return {
                key,
                size: response.ContentLength ?? 0,
                lastModified: response.LastModified ?? new Date(0),
                // S3 omits the header for STANDARD objects.
                storageClass: response.StorageClass ?? 'STANDARD',
                restored: restoredCopy(response.Restore),
            };
        }
        catch (error) {
            if (isNotFound(error))
                return undefined;
            throw this.translate(error, 'read', key);
        }
    }
    async *list(prefix) {
        const base = this.prefix === '' ? '' : `${this.prefix}/`;
        let token;
        do {
            let page;
            try {
                page = await this.client.send(new _aws_sdk_client_s3__WEBPACK_IMPORTED_MODULE_6__/* .ListObjectsV2Command */ .u6x({
                    Bucket: this.bucket,
                    Prefix: base + prefix,
                    ContinuationToken: token,
                }));
            }
            catch (error) {
                throw this.translate(error, 'list');
            }
            for (const object of page.Contents ?? []) {
                if (object.Key === undefined)
                    continue;
                yield {
                    key: this.relativeKey(object.Key),
                    size: object.Size ?? 0,
                    lastModified: object.LastModified ?? new Date(0),
                    storageClass: object.StorageClass,
                };
            }
            token = page.IsTruncated ? page.NextContinuationToken : undefined;
            if (page.IsTruncated && token === undefined) {
                throw new Error(`The S3 listing of s3://${this.bucket}/${base + prefix} was truncated without a continuation token.`);
            }
        } while (token !== undefined);
    }
    async delete(keys, options = {}) {
        const unique = [...new Set(keys)];
        const result = { deleted: [], locked: [] };
        const failures = [];
        for (let start = 0; start < unique.length; start += DELETE_BATCH) {
            const batch = unique.slice(start, start + DELETE_BATCH);
            let response;
            try {
                response = await this.client.send(new _aws_sdk_client_s3__WEBPACK_IMPORTED_MODULE_6__/* .DeleteObjectsCommand */ .xvx({
                    Bucket: this.bucket,
                    Delete: { Objects: batch.map((key) => ({ Key: this.fullKey(key) })), Quiet: false },
                    BypassGovernanceRetention: options.bypassGovernanceRetention ? true : undefined,
                }));
            }
            catch (error) {
                throw this.translate(error, 'delete');
            }
            const accounted = new Set();
            for (const deleted of response.Deleted ?? []) {
                if (deleted.Key === undefined)
                    continue;
                const key = this.relativeKey(deleted.Key);
                if (accounted.has(key))
                    continue;
                accounted.add(key);
                result.deleted.push(key);
            }
            for (const failed of response.Errors ?? []) {
                if (failed.Key === undefined)
                    continue;
                const key = this.relativeKey(failed.Key);
                accounted.add(key);
                const code = failed.Code ?? 'Error';
                const reason = lockReason(code, failed.Message ?? '');
                if (reason !== undefined)
                    result.locked.push({ key, reason });
                else
                    failures.push(`${this.location(key)}: ${code}${failed.Message ? ` (${failed.Message})` : ''}`);
            }
            for (const key of batch) {
                if (!accounted.has(key))
                    failures.push(`${this.location(key)}: not reported by DeleteObjects`);
            }
        }
        if (failures.length > 0) {
            const shown = failures.slice(0, 5).join('; ');
            const more = failures.length > 5 ? ` and ${failures.length - 5} more` : '';
            throw new Error(`Could not delete ${failures.length} object(s) at ${this.endpointLabel}: ${shown}${more}`);
        }
        return result;
    }
    async versioning() {
        try {
            const response = await this.client.send(new _aws_sdk_client_s3__WEBPACK_IMPORTED_MODULE_6__/* .GetBucketVersioningCommand */ ._rj({ Bucket: this.bucket }));
            if (response.Status === 'Enabled' || response.Status === 'Suspended') {
                return response.Status;
            }
            return 'Off';
        }
        catch (error) {
            const code = codeOf(error);
            if (code === 'AccessDenied' || code === 'NotImplemented' || statusOf(error) === 501) {
                this.logger.debug(`GetBucketVersioning on ${this.bucket}: ${code}`);
                return undefined;
            }
            throw this.translate(error, 'versioning');
        }
    }
    /** Closes the client's sockets. */
    destroy() {
        this.client.destroy();
    }
}


/***/ })

};
