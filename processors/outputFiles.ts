/**
 * The files of a multi-file output (`hls`, `storyboard`): names as the video job writes them, and
 * the content type of each, for the store and for serving. Nothing else names a file in there.
 */
const TYPES: Record<string, string> = {
  m3u8: 'application/vnd.apple.mpegurl',
  m4s: 'video/iso.segment',
  mp4: 'video/mp4',
  vtt: 'text/vtt',
  jpg: 'image/jpeg',
};

const FILE_NAME = /^[a-z0-9_]{1,40}\.([a-z0-9]{2,4})$/;

/** The content type of an output file named `file`, or undefined for a name no output file has. */
export function outputFileType(file: string): string | undefined {
  const extension = FILE_NAME.exec(file)?.[1];
  return extension === undefined ? undefined : TYPES[extension];
}

/** What a player opens first in each multi-file output; the other files are named from it, relative to it. */
export const entryFiles: Record<string, string> = { hls: 'master.m3u8', storyboard: 'storyboard.vtt' };
