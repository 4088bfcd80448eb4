/**
 * src/data: datasets, importers, augmentation and loading, for the browser and Node.
 * This entry is platform-neutral plus the browser helpers; Node code imports './node' as well
 * (sharp decoding, paths, the built-ins from disk).
 */
export { DatasetError, DEFAULT_LIMITS, formatBytes, type DatasetErrorCode, type ImportLimits } from './errors';
export { assertValidDataset, channelStats, datasetBytes, makeDataset, sampleRGBA, splitOrder, summarize, withChannels, type ChannelStats, type DatasetSummary, type ImageDataset } from './dataset';
export { importDataset, decodedToCHW, DEFAULT_SPLIT_SEED, type DecodedImage, type ImageDecoder, type ImportOptions, type ImportProgress, type ImportResult, type ImportSource } from './import';
export { DataLoader, BatchPrefetcher, MAE_AUGMENT, randomResizedCropParams, statsForChannels, type AugmentOptions, type Batch, type LoaderOptions, type LoaderState } from './loader';
export { makeShapesDataset, SHAPE_CLASSES, type ShapesOptions } from './procedural';
export { BUILTIN_DATASETS, fetchMnist, loadBuiltin, mnistUrl, type BuiltinId, type BuiltinInfo } from './builtin';
export { encodeDmds, decodeDmds } from './formats/dmds';
export { resizeCHW, resampleCHW, coverCrop, type Rect } from './resize';
export { Rng, hashInts } from './rng';
export { browserDecoder } from './decode-browser';
export { importBrowserFiles, sourcesFromDataTransfer, sourcesFromFileList } from './browser-files';
export { DatasetStore, makeThumbnails, type DatasetStoreOptions, type StoredDatasetInfo, type Thumbnail } from './store-idb';
