export declare const SEGMENT_BYTES: number
export declare const segmentsDirOf: (dbPath: string) => string
export declare const readAt: (dir: string, segment: number, offset: number, length: number) => Buffer | undefined
