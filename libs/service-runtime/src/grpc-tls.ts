import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import {
  type ChannelCredentials,
  credentials,
  ResponderBuilder,
  ServerCredentials,
  ServerInterceptingCall,
  ServerListenerBuilder,
  status,
  type ChannelOptions,
  type ServerInterceptor,
} from '@grpc/grpc-js';
import { GRPC_PEERS, type GrpcPeer, type ServiceTls } from '@sluice/config';

/**
 * Server side of the deployment's mutual TLS: the client must present a certificate that chains
 * to this deployment's CA, so a proxy of another deployment is refused at the handshake. Without
 * material (a service embedded in-process, e.g. by a test) it serves plain text.
 */
export const grpcServerCredentials = (tls: ServiceTls | undefined): ServerCredentials =>
  tls === undefined
    ? ServerCredentials.createInsecure()
    : ServerCredentials.createSsl(Buffer.from(tls.ca), [{ cert_chain: Buffer.from(tls.cert), private_key: Buffer.from(tls.key) }], true);

/**
 * Client side: trusts only this deployment's CA, presents this peer's certificate, and checks that
 * the server's certificate names the service it meant to reach (`peer`) whatever address it
 * dialled: the policy service's certificate cannot answer for masking, and a load balancer's or
 * pod's address needs no entry in a certificate.
 */
export const grpcClientCredentials = (tls: ServiceTls | undefined, peer: GrpcPeer): ChannelCredentials =>
  tls === undefined
    ? credentials.createInsecure()
    : credentials.createSsl(Buffer.from(tls.ca), Buffer.from(tls.key), Buffer.from(tls.cert), {
        checkServerIdentity: (_host: string, certificate: PeerCertificate) => checkServerIdentity(peer, certificate),
      });

/**
 * Channel options going with grpcClientCredentials: the TLS server name sent (SNI) is the peer's
 * name, not the dialled address (an IP address there is not allowed by RFC 6066 and warns).
 */
export const grpcClientChannelOptions = (tls: ServiceTls | undefined, peer: GrpcPeer): ChannelOptions =>
  tls === undefined ? {} : { 'grpc.ssl_target_name_override': peer };

/** The peer a verified client certificate names (its DNS name), if it names one. */
const peerNamedBy = (certificate: PeerCertificate | undefined): GrpcPeer | undefined =>
  certificate === undefined ? undefined : GRPC_PEERS.find((peer) => checkServerIdentity(peer, certificate) === undefined);

/**
 * Server side, past the handshake: which peers of the deployment may call a method (by its path,
 * `/sluice.policy.v1.PolicyService/Reload`). The proxy's certificate cannot reload the policy, the
 * operator's cannot stream masking profiles. Anyone else gets PERMISSION_DENIED before the
 * handler runs. Only for a server with TLS: without it there is no certificate to read.
 */
export const grpcPeerAuthorization = (allowedPeers: (methodPath: string) => readonly GrpcPeer[]): ServerInterceptor => (method, call) => {
  const peer = peerNamedBy(call.getAuthContext()?.sslPeerCertificate);
  const allowed = peer !== undefined && allowedPeers(method.path).includes(peer);
  const listener = new ServerListenerBuilder()
    .withOnReceiveMetadata((metadata, next) => {
      if (allowed) next(metadata);
      else call.sendStatus({ code: status.PERMISSION_DENIED, details: `${peer ?? 'this peer'} may not call ${method.path}` });
    })
    .build();
  return new ServerInterceptingCall(call, new ResponderBuilder().withStart((next) => next(listener)).build());
};

/** Server options for a service with (or without) the deployment's mutual TLS. */
export const grpcServerAuthorization = (tls: ServiceTls | undefined, allowedPeers: (methodPath: string) => readonly GrpcPeer[]): { interceptors: ServerInterceptor[] } => ({
  interceptors: tls === undefined ? [] : [grpcPeerAuthorization(allowedPeers)],
});
