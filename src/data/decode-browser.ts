/**
 * The browser's own image decoders (createImageBitmap + OffscreenCanvas), in a page or a
 * worker. The size is checked from the file's header before this is called (see
 * formats/image-header.ts), so a 30000×30000 PNG is refused without being decoded.
 */
import { DatasetError } from './errors';
import { checkImageSize } from './formats/image-header';
import type { DecodedImage, ImageDecoder } from './import';

export const browserDecoder: ImageDecoder = {
  async decode(bytes, file, header, limits): Promise<DecodedImage> {
    checkImageSize(header, file, limits);
    let bitmap: ImageBitmap;
    try {
      bitmap = await createImageBitmap(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: `image/${header.format}` }), { premultiplyAlpha: 'none', colorSpaceConversion: 'none', imageOrientation: 'from-image' });
    } catch (e) {
      throw new DatasetError(file, 'corrupt', `could not be decoded as ${header.format.toUpperCase()} by the browser (${e instanceof Error ? e.message : String(e)}).`, 'The image is damaged, or its extension does not match its content.');
    }
    try {
      const { width, height } = bitmap;
      checkImageSize({ width, height }, file, limits);
      const canvas = new OffscreenCanvas(width, height);
      const ctx = canvas.getContext('2d', { willReadFrequently: true });
      if (!ctx) throw new DatasetError(file, 'unsupported', 'could not be decoded: this browser gives no 2D canvas.');
      ctx.drawImage(bitmap, 0, 0);
      const data = ctx.getImageData(0, 0, width, height).data;
      return { width, height, channels: 4, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
    } finally {
      bitmap.close();
    }
  },
};
