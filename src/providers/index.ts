import { OfflineEchoAdapter } from './offline/echo-adapter.ts';
import { OfflineSketchAdapter } from './offline/sketch-adapter.ts';
import type { ProviderAdapter } from './types.ts';
// Each upstream adapter is imported and listed here, and nowhere else (src/server.ts calls this).
// (adapter imports)
import { OpenAIImageAdapter } from './openai/openai-image-adapter.ts';
import { OpenAICompatibleImageAdapter } from './openai-compatible/openai-compatible-image-adapter.ts';
import { OpenAICompatibleChatAdapter } from './openai-compatible/openai-compatible-chat-adapter.ts';
import { ArkImageAdapter } from './ark/ark-image-adapter.ts';
import { BflImageAdapter } from './bfl/bfl-image-adapter.ts';
import { FalImageAdapter } from './fal/fal-image-adapter.ts';
import { GeminiImageAdapter } from './gemini/gemini-image-adapter.ts';
import { XaiImageAdapter } from './xai/xai-image-adapter.ts';

export function builtInAdapters(): ProviderAdapter[] {
  return [
    new OfflineSketchAdapter(),
    new OfflineEchoAdapter(),
    // (adapter instances)
    new OpenAIImageAdapter(),
    new OpenAICompatibleImageAdapter(),
    new OpenAICompatibleChatAdapter(),
    new ArkImageAdapter(),
    new BflImageAdapter(),
    new FalImageAdapter(),
    new GeminiImageAdapter(),
    new XaiImageAdapter(),
  ];
}
