import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { ffmpegRun } from './videoSamples.ts';

/**
 * HEIC files built the way an iPhone writes them, at test time from ffmpeg's x265 and a container
 * assembled here box by box (ISO/IEC 23008-12): the primary item is a `grid` of hidden 512x512
 * `hvc1` tiles sharing one `hvcC`, with `ispe`, `colr` (nclx), `pixi` and `irot` on the grid and an
 * `Exif` item (`cdsc`) carrying the camera tags, the GPS position and the EXIF Orientation. The
 * pixels are stored as the sensor saw them (landscape) and `irot` turns them upright, as an
 * iPhone held upright does (`irot` 3 = 270° anticlockwise, EXIF Orientation 6). heif-enc 1.15
 * cannot write grids, and ffmpeg 5.1 cannot write HEIF at all.
 */

export interface IphoneHeicOptions {
  /** Stored (sensor) size; an iPhone's 12 MP main camera stores 4032x3024. */
  width?: number;
  height?: number;
  /** EXIF Orientation and `irot` together: 6 (irot 3, upright portrait) or 1 (no irot, landscape). */
  orientation?: 1 | 6;
  /** An ICC profile for the `colr` box (`prof`, as iPhones write Display P3) instead of nclx. */
  icc?: Buffer;
  name?: string;
}

/** Tags as an iPhone writes them; GPS goes into IFD3, the EXIF sub-IFD is IFD2. */
export const iphoneExif = {
  IFD0: { Make: 'Apple', Model: 'iPhone 15 Pro', Software: '17.4', DateTime: '2024:06:01 09:15:00' },
  IFD2: { DateTimeOriginal: '2024:06:01 09:15:00', OffsetTimeOriginal: '+01:00', ExposureTime: '1/120', FNumber: '178/100', ISOSpeedRatings: '80', LensModel: 'iPhone 15 Pro back triple camera 6.765mm f/1.78' },
  IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '59/1 19/1 4800/100', GPSLongitudeRef: 'E', GPSLongitude: '18/1 4/1 1200/100' },
};

const TILE = 512;

/**
 * The stored picture is `photoPixels`-like: dark red on the left edge, bright red on the right. With
 * orientation 6 it displays turned 90° clockwise: dark at the top, bright at the bottom.
 */
export async function iphoneHeic(dir: string, pixels: Buffer, options: IphoneHeicOptions = {}): Promise<string> {
  const { width = 4032, height = 3024, orientation = 6 } = options;
  const file = path.join(dir, options.name ?? `IMG_${width}x${height}-o${orientation}.heic`);
  const columns = Math.ceil(width / TILE);
  const rows = Math.ceil(height / TILE);

  // The picture padded to whole tiles (edge pixels repeated, as encoders do), then cut into tiles
  // by ffmpeg's `untile` (row by row) and coded as all-intra HEVC: one frame per tile.
  const padded = path.join(dir, `${path.basename(file)}.padded.png`);
  await sharp(pixels, { raw: { width, height, channels: 3 } })
    .extend({ right: columns * TILE - width, bottom: rows * TILE - height, extendWith: 'copy' })
    .png({ compressionLevel: 1 })
    .toFile(padded);
  const stream = path.join(dir, `${path.basename(file)}.hevc`);
  await ffmpegRun([
    '-i', padded,
    // Full-range BT.601 YCbCr, as iPhones store it (and as the `colr` box below says).
    '-vf', `untile=${columns}x${rows},scale=out_color_matrix=bt601:out_range=full,format=yuvj420p`,
    '-c:v', 'libx265', '-preset', 'ultrafast', '-x265-params', 'keyint=1:info=0:log-level=error',
    '-f', 'hevc', stream,
  ]);
  const { parameterSets, pictures } = splitAnnexB(await readFile(stream));
  if (pictures.length !== columns * rows) throw new Error(`x265 wrote ${pictures.length} pictures for ${columns * rows} tiles`);

  // The EXIF block as sharp writes it into a JPEG ("Exif\0\0" + TIFF), orientation included.
  const exif = (await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } })
    .withMetadata({ orientation })
    .withExif(iphoneExif)
    .jpeg()
    .toBuffer()
    .then((jpeg) => sharp(jpeg).metadata())).exif!;

  await writeFile(file, heifContainer({ width, height, columns, rows, orientation, parameterSets, pictures, exif, icc: options.icc }));
  await Promise.all([padded, stream].map((f) => rm(f, { force: true })));
  return file;
}

/** 512x512 of pure sRGB red stored as Display P3 numbers (about 234, 51, 35) with a Display P3 ICC profile. */
export async function displayP3Heic(dir: string): Promise<string> {
  const jpeg = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#ff0000' } }).withIccProfile('p3').jpeg().toBuffer();
  const icc = (await sharp(jpeg).metadata()).icc!;
  const pixels = await sharp({ create: { width: 512, height: 512, channels: 3, background: '#ff0000' } })
    .withIccProfile('p3')
    .raw()
    .toBuffer();
  return iphoneHeic(dir, pixels, { width: 512, height: 512, orientation: 1, icc, name: 'display-p3.heic' });
}

/**
 * A HEIC whose container is valid (ftyp heic, an `hvc1` primary item with hvcC and ispe) around a
 * payload that is no HEVC at all: libvips reads its header, heif-convert fails to decode it.
 */
export async function brokenHeic(dir: string, width = 4032, height = 3024): Promise<string> {
  const file = path.join(dir, 'broken.heic');
  const ftyp = box('ftyp', Buffer.from('heic'), u32(0), Buffer.from('mif1heic'));
  const payload = Buffer.alloc(64, 0x11);
  const metaFor = (offset: number) => {
    const hvcC = box('hvcC', Buffer.from([1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 0x5a, 0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0, 0x0f, 0]));
    return fullBox(
      'meta', 0, 0,
      fullBox('hdlr', 0, 0, u32(0), Buffer.from('pict'), Buffer.alloc(12), Buffer.from([0])),
      fullBox('pitm', 0, 0, u16(1)),
      fullBox('iloc', 0, 0, Buffer.from([0x44, 0x00]), u16(1), u16(1), u16(0), u16(1), u32(offset), u32(payload.length)),
      fullBox('iinf', 0, 0, u16(1), fullBox('infe', 2, 0, u16(1), u16(0), Buffer.from('hvc1'), Buffer.from([0]))),
      box('iprp', box('ipco', hvcC, fullBox('ispe', 0, 0, u32(width), u32(height))), fullBox('ipma', 0, 0, u32(1), u16(1), Buffer.from([2, 0x81, 0x02]))),
    );
  };
  const offset = ftyp.length + metaFor(0).length + 8;
  await writeFile(file, Buffer.concat([ftyp, metaFor(offset), box('mdat', payload)]));
  return file;
}

/** VPS, SPS, PPS (for `hvcC`) and one coded picture per tile (its VCL NAL units), from an Annex B stream. */
function splitAnnexB(bytes: Buffer): { parameterSets: Buffer[]; pictures: Buffer[][] } {
  const nals: Buffer[] = [];
  let start = -1;
  for (let i = 0; i + 3 <= bytes.length; i++) {
    if (bytes[i] === 0 && bytes[i + 1] === 0 && bytes[i + 2] === 1) {
      if (start >= 0) nals.push(trimZeros(bytes.subarray(start, i)));
      start = i + 3;
      i += 2;
    }
  }
  if (start >= 0) nals.push(bytes.subarray(start));
  const parameterSets: Buffer[] = [];
  const pictures: Buffer[][] = [];
  for (const nal of nals) {
    const type = (nal[0]! >> 1) & 0x3f;
    if (type >= 32 && type <= 34) {
      if (pictures.length === 0) parameterSets.push(nal);
    } else if (type < 32) {
      // first_slice_segment_in_pic_flag: the top bit after the two-byte NAL header.
      if ((nal[2]! & 0x80) !== 0 || pictures.length === 0) pictures.push([]);
      pictures.at(-1)!.push(nal);
    }
  }
  return { parameterSets, pictures };
}

function trimZeros(nal: Buffer): Buffer {
  let end = nal.length;
  while (end > 0 && nal[end - 1] === 0) end--;
  return nal.subarray(0, end);
}

interface Container {
  width: number;
  height: number;
  columns: number;
  rows: number;
  orientation: 1 | 6;
  parameterSets: Buffer[];
  pictures: Buffer[][];
  exif: Buffer;
  icc: Buffer | undefined;
}

function heifContainer(c: Container): Buffer {
  const tiles = c.pictures.map((nals) => Buffer.concat(nals.flatMap((nal) => [u32(nal.length), nal])));
  const gridId = tiles.length + 1;
  const exifId = tiles.length + 2;
  // An Exif item starts with the offset of the TIFF header past its own 4 bytes: past "Exif\0\0".
  const exifItem = Buffer.concat([u32(6), c.exif]);
  const ftyp = box('ftyp', Buffer.from('heic'), u32(0), Buffer.from('mif1MiHEMiPrmiafMiHBheic'));
  const grid = Buffer.concat([Buffer.from([0, 0, c.rows - 1, c.columns - 1]), u16(c.width), u16(c.height)]);

  const meta = (mdatData: number) => {
    let at = mdatData;
    const extents = [...tiles, exifItem].map((data) => {
      const offset = at;
      at += data.length;
      return { offset, length: data.length };
    });
    // iloc version 1 (construction methods): 4-byte offsets and lengths, no base offset.
    const ilocEntries = extents.map((e, i) => Buffer.concat([u16(i < tiles.length ? i + 1 : exifId), u16(0), u16(0), u16(1), u32(e.offset), u32(e.length)]));
    const gridEntry = Buffer.concat([u16(gridId), u16(1), u16(0), u16(1), u32(0), u32(grid.length)]); // from idat
    const infe = (id: number, type: string, hidden: boolean) => fullBox('infe', 2, hidden ? 1 : 0, u16(id), u16(0), Buffer.from(type), Buffer.from([0]));
    const ipmaEntry = (id: number, props: number[]) => Buffer.concat([u16(id), Buffer.from([props.length, ...props])]);
    const ESSENTIAL = 0x80;
    const gridProps = [3, 5, 6, ...(c.orientation === 6 ? [ESSENTIAL | 4] : [])]; // descriptive first, then irot
    return fullBox(
      'meta', 0, 0,
      fullBox('hdlr', 0, 0, u32(0), Buffer.from('pict'), Buffer.alloc(12), Buffer.from([0])),
      fullBox('pitm', 0, 0, u16(gridId)),
      fullBox('iloc', 1, 0, Buffer.from([0x44, 0x00]), u16(tiles.length + 2), ...ilocEntries, gridEntry),
      fullBox('iinf', 0, 0, u16(tiles.length + 2), ...tiles.map((_, i) => infe(i + 1, 'hvc1', true)), infe(gridId, 'grid', false), infe(exifId, 'Exif', true)),
      fullBox(
        'iref', 0, 0,
        box('dimg', u16(gridId), u16(tiles.length), ...tiles.map((_, i) => u16(i + 1))),
        box('cdsc', u16(exifId), u16(1), u16(gridId)),
      ),
      box(
        'iprp',
        box(
          'ipco',
          hvcC(c.parameterSets), // 1
          fullBox('ispe', 0, 0, u32(TILE), u32(TILE)), // 2
          fullBox('ispe', 0, 0, u32(c.width), u32(c.height)), // 3
          box('irot', Buffer.from([3])), // 4: 270° anticlockwise = 90° clockwise
          // 5: BT.709 primaries, sRGB curve, BT.601 matrix, full range; or the ICC profile.
          c.icc ? box('colr', Buffer.from('prof'), c.icc) : box('colr', Buffer.from('nclx'), u16(1), u16(13), u16(6), Buffer.from([0x80])),
          fullBox('pixi', 0, 0, Buffer.from([3, 8, 8, 8])), // 6
        ),
        fullBox('ipma', 0, 0, u32(tiles.length + 1), ...tiles.map((_, i) => ipmaEntry(i + 1, [ESSENTIAL | 1, 2])), ipmaEntry(gridId, gridProps)),
      ),
      box('idat', grid),
    );
  };
  const mdatData = ftyp.length + meta(0).length + 8;
  return Buffer.concat([ftyp, meta(mdatData), box('mdat', ...tiles, exifItem)]);
}

/** HEVCDecoderConfigurationRecord: profile, tier and level from the SPS, then the parameter sets. */
function hvcC(parameterSets: Buffer[]): Buffer {
  const sps = unescapeRbsp(parameterSets.find((nal) => ((nal[0]! >> 1) & 0x3f) === 33)!);
  // After the NAL header: vps id (4 bits), max_sub_layers_minus1 (3), nesting (1); then the
  // 12-byte general profile_tier_level (no sub-layers in an x265 still).
  const profileTierLevel = sps.subarray(3, 15);
  const arrays = parameterSets.map((nal) => Buffer.concat([Buffer.from([0x80 | ((nal[0]! >> 1) & 0x3f)]), u16(1), u16(nal.length), nal]));
  return box(
    'hvcC',
    Buffer.from([1]),
    profileTierLevel,
    Buffer.from([0xf0, 0x00, 0xfc, 0xfc | 1, 0xf8, 0xf8, 0, 0, 0x0f, arrays.length]),
    ...arrays,
  );
}

function unescapeRbsp(nal: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < nal.length; i++) {
    if (i >= 2 && nal[i] === 3 && nal[i - 1] === 0 && nal[i - 2] === 0) continue;
    out.push(nal[i]!);
  }
  return Buffer.from(out);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
function box(type: string, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([u32(body.length + 8), Buffer.from(type, 'latin1'), body]);
}
function fullBox(type: string, version: number, flags: number, ...parts: Buffer[]): Buffer {
  return box(type, Buffer.from([version, (flags >> 16) & 0xff, (flags >> 8) & 0xff, flags & 0xff]), ...parts);
}
