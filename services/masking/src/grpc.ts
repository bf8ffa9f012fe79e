import { status, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream } from '@grpc/grpc-js';
import type { masking } from '@sluice/proto';
import type { MaskCounts } from '@sluice/masking-engine';
import type { ProfilesVersion } from './snapshot.js';

type WatchCall = ServerWritableStream<masking.WatchProfilesRequest, masking.WatchProfilesResponse>;

const toResponse = (current: ProfilesVersion): masking.WatchProfilesResponse => ({ maskingConfigJson: current.json, version: current.version });

/**
 * The MaskingService adapter: proto <-> engine, errors -> gRPC status. Watchers get the current
 * version on subscribe and every later one.
 */
export class MaskingGrpcHandlers {
  readonly #watchers = new Set<WatchCall>();

  constructor(private readonly current: () => ProfilesVersion) {}

  get watcherCount(): number {
    return this.#watchers.size;
  }

  readonly implementation: masking.MaskingServiceServer = {
    watchProfiles: (call: WatchCall) => {
      this.#watchers.add(call);
      const forget = (): void => {
        this.#watchers.delete(call);
      };
      call.on('cancelled', forget);
      call.on('close', forget);
      call.on('error', forget);
      call.write(toResponse(this.current()));
    },
    maskValues: (call: ServerUnaryCall<masking.MaskValuesRequest, masking.MaskValuesResponse>, callback: sendUnaryData<masking.MaskValuesResponse>) => {
      const { profile, columnNames, values } = call.request;
      const masker = this.current().compiled.profile(profile);
      if (!masker) {
        callback({ code: status.NOT_FOUND, details: `no masking profile "${profile}"` });
        return;
      }
      if (columnNames.length === 0 ? values.length > 0 : values.length % columnNames.length !== 0) {
        callback({ code: status.INVALID_ARGUMENT, details: 'values must hold column_names.length values per row' });
        return;
      }
      // One ColumnInfo per column, reused for every row: the engine caches its plan per object.
      const columns = columnNames.map((name) => ({ name }));
      const counts: MaskCounts = {};
      const masked = values.map((cell, index) => {
        if (cell.value === undefined) return {};
        const value = masker.maskCell(cell.value, columns[index % columns.length], counts);
        return value === null ? {} : { value };
      });
      callback(null, { values: masked, maskedCounts: counts });
    },
  };

  /** Sends a new version to every watcher. */
  broadcast(): void {
    const response = toResponse(this.current());
    for (const call of this.#watchers) call.write(response);
  }

  /** Ends every watch stream: the proxies see the service go and withhold results. */
  endAll(): void {
    for (const call of this.#watchers) call.end();
    this.#watchers.clear();
  }
}
