/**
 * Import sources from the browser: a file or folder picker's FileList, and drag-and-drop
 * (DataTransfer, with folders walked through the FileSystem entries API). Files are read only
 * when the importer asks, after it has checked their sizes against the limits.
 */
import { DatasetError, DEFAULT_LIMITS } from './errors';
import { importDataset, type ImportOptions, type ImportResult, type ImportSource } from './import';
import { browserDecoder } from './decode-browser';

function fromFile(file: File, path: string): ImportSource {
  return { path, size: file.size, read: async () => new Uint8Array(await file.arrayBuffer()) };
}

/** From <input type="file" multiple> or <input type="file" webkitdirectory> (paths keep the folder). */
export function sourcesFromFileList(files: FileList | File[]): ImportSource[] {
  return Array.from(files, (f) => fromFile(f, f.webkitRelativePath || f.name));
}

/**
 * From a drop event. Call it synchronously inside the handler: the browser empties the
 * DataTransfer once the event returns, so the entries are taken first, then walked.
 */
export function sourcesFromDataTransfer(dt: DataTransfer, maxEntries = DEFAULT_LIMITS.maxEntries): Promise<ImportSource[]> {
  const entries: FileSystemEntry[] = [];
  const loose: File[] = [];
  for (const item of Array.from(dt.items)) {
    if (item.kind !== 'file') continue;
    const entry = item.webkitGetAsEntry?.();
    if (entry) entries.push(entry);
    else {
      const f = item.getAsFile();
      if (f) loose.push(f);
    }
  }
  if (entries.length === 0 && loose.length === 0) for (const f of Array.from(dt.files)) loose.push(f);
  return (async () => {
    const out: ImportSource[] = loose.map((f) => fromFile(f, f.name));
    const push = (s: ImportSource) => {
      if (out.length >= maxEntries) throw new DatasetError(s.path, 'too-large', `is one file too many: an import may have at most ${maxEntries} files.`);
      out.push(s);
    };
    const walk = async (entry: FileSystemEntry, prefix: string): Promise<void> => {
      const path = prefix ? `${prefix}/${entry.name}` : entry.name;
      if (entry.isFile) {
        const file = await new Promise<File>((resolve, reject) => (entry as FileSystemFileEntry).file(resolve, reject));
        push(fromFile(file, path));
      } else if (entry.isDirectory) {
        const reader = (entry as FileSystemDirectoryEntry).createReader();
        // readEntries returns the folder in batches (100 in Chromium) until an empty one.
        for (;;) {
          const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
          if (batch.length === 0) break;
          for (const e of batch) await walk(e, path);
        }
      }
    };
    for (const e of entries) await walk(e, '');
    return out;
  })();
}

/** Import in the browser, decoding images with the browser's own decoders. */
export function importBrowserFiles(sources: ImportSource[], opts: ImportOptions = {}): Promise<ImportResult> {
  return importDataset(sources, { decoder: browserDecoder, ...opts });
}
