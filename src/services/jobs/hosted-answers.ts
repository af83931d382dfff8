import type { Logger } from 'pino';
import { decodeBase64Text } from '../../images/base64.ts';
import type { DeliveredImage } from '../image-work.ts';
import type { HostedFiles } from './hosted-files.ts';

/** One synchronous request's hosted links: the hook that stores each delivered image, and each image's link. */
export interface HostedAnswer {
  /** For ExecuteHooks.onImage: stores the image before the charge is settled (so the answer can name it). */
  onImage(image: DeliveredImage): Promise<void>;
  /** The image's signed link; undefined when it could not be stored (the answer then carries its `data:` URI). */
  urlOf(image: DeliveredImage): string | undefined;
}

/**
 * DEEPSHI_URL_RESULTS=hosted: a synchronous `response_format: "url"` answer names its images by signed, expiring
 * links to hosted files (the same storage, TTL and sweeper as job results, owned by the caller's account) instead of
 * `data:` URIs. A file that cannot be stored is logged and that image is answered inline: the caller was charged for
 * it, so it is delivered either way.
 */
export class HostedAnswers {
  constructor(private readonly deps: { files: HostedFiles; publicUrl: string | undefined; logger: Logger }) {}

  /** `origin` is the request's (`https://host`), used for the links when DEEPSHI_PUBLIC_URL is unset. */
  begin(accountId: string, origin: string, requestId: string): HostedAnswer {
    const links = new Map<DeliveredImage, string>();
    const base = this.deps.publicUrl ?? origin;
    return {
      onImage: async (image) => {
        try {
          const file = await this.deps.files.save({
            accountId,
            jobId: null,
            kind: 'result',
            bytes: decodeBase64Text(image.base64),
            mediaType: image.mediaType,
          });
          links.set(image, this.deps.files.link(file, base));
        } catch (error) {
          this.deps.logger.error({ err: error, requestId }, 'could not store a hosted result; that image is answered as a data: URI');
        }
      },
      urlOf: (image) => links.get(image),
    };
  }
}
