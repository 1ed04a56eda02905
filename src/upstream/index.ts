/** Upstream forwarder: address lists, the Forwarder, health, and its errors. */
export { UpstreamError, isUpstreamError, type UpstreamErrorCode } from './errors.js';
export { type UpstreamAddr, DEFAULT_DNS_PORT, parseUpstreams, parseUpstream, formatUpstream } from './upstream.js';
export { Forwarder, type ForwarderOptions, type ForwarderStats, type Question } from './forwarder.js';
export { type HealthOptions, type UpstreamStats, DEFAULT_HEALTH } from './health.js';
export { type PortRange, kernelPortRange } from './random.js';
export { Mismatch, type MismatchCode, buildQuery, matchResponse, questionKey } from './wire.js';
