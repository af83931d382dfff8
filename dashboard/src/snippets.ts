// The playground's request as code a caller can paste: curl, Node (openai) and Python (openai). The key is always
// the $DEEPSHI_API_KEY placeholder, never the page's temporary key.

/** Fields the Python SDK's images methods take as keyword arguments; the rest go in extra_body. */
const PYTHON_IMAGE_KWARGS = new Set(['model', 'prompt', 'n', 'size', 'quality', 'response_format', 'output_format', 'background', 'moderation', 'output_compression', 'partial_images', 'stream', 'style', 'user']);
const PYTHON_CHAT_KWARGS = new Set(['model', 'messages', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'stop', 'seed', 'frequency_penalty', 'presence_penalty', 'logit_bias', 'stream', 'stream_options', 'n', 'user']);

export type Snippets = { curl: string; node: string; python: string };

const shellQuote = (text: string) => `'${text.replace(/'/g, `'\\''`)}'`;

function python(value: unknown): string {
  if (value === null || value === undefined) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(python).join(', ')}]`;
  if (typeof value === 'object') return `{${Object.entries(value).map(([key, item]) => `${JSON.stringify(key)}: ${python(item)}`).join(', ')}}`;
  return String(value);
}

function pythonCall(method: string, body: Record<string, unknown>, known: Set<string>, extra: string[] = []): string {
  const kwargs = Object.entries(body).filter(([name]) => known.has(name));
  const others = Object.fromEntries(Object.entries(body).filter(([name]) => !known.has(name)));
  const lines = [...kwargs.map(([name, value]) => `    ${name}=${python(value)},`), ...extra.map((line) => `    ${line},`)];
  if (Object.keys(others).length) lines.push(`    extra_body=${python(others)},`);
  return `${method}(\n${lines.join('\n')}\n)`;
}

const nodeHeader = (origin: string) =>
  `import OpenAI from 'openai';\n\nconst client = new OpenAI({ apiKey: process.env.DEEPSHI_API_KEY, baseURL: '${origin}/v1' });\n`;
const pythonHeader = (origin: string) => `import os\nfrom openai import OpenAI\n\nclient = OpenAI(api_key=os.environ["DEEPSHI_API_KEY"], base_url="${origin}/v1")\n`;

export function imageSnippets(origin: string, body: Record<string, unknown>, referenceCount: number): Snippets {
  if (referenceCount > 0) {
    const files = Array.from({ length: referenceCount }, (_, index) => `reference-${index + 1}.png`);
    const fields = Object.entries(body).map(([name, value]) => `  -F ${shellQuote(`${name}=${typeof value === 'object' ? JSON.stringify(value) : String(value)}`)} \\`);
    return {
      curl: [`curl ${origin}/v1/images/edits \\`, '  -H "Authorization: Bearer $DEEPSHI_API_KEY" \\', ...fields, ...files.map((file) => `  -F "image[]=@${file}" \\`)].join('\n').replace(/ \\$/, ''),
      node: `${nodeHeader(origin)}import fs from 'node:fs';\n\nconst result = await client.images.edit(${JSON.stringify(body, null, 2).replace(/\n}$/, `,\n  "image": [${files.map((file) => `fs.createReadStream('${file}')`).join(', ')}]\n}`)});\nconsole.log(result.usage.cost.total_cost);\n`,
      python: `${pythonHeader(origin)}\nresult = client.images.${pythonCall('edit', body, PYTHON_IMAGE_KWARGS, [`image=[${files.map((file) => `open("${file}", "rb")`).join(', ')}]`])}\nprint(result.to_dict()["usage"]["cost"]["total_cost"])\n`,
    };
  }
  return {
    curl: `curl ${origin}/v1/images/generations \\\n  -H "Authorization: Bearer $DEEPSHI_API_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d ${shellQuote(JSON.stringify(body))}`,
    node: `${nodeHeader(origin)}\nconst result = await client.images.generate(${JSON.stringify(body, null, 2)});\nconsole.log(result.usage.cost.total_cost);\n`,
    python: `${pythonHeader(origin)}\nresult = client.images.${pythonCall('generate', body, PYTHON_IMAGE_KWARGS)}\nprint(result.to_dict()["usage"]["cost"]["total_cost"])\n`,
  };
}

export function chatSnippets(origin: string, body: Record<string, unknown>): Snippets {
  return {
    curl: `curl ${origin}/v1/chat/completions \\\n  -H "Authorization: Bearer $DEEPSHI_API_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d ${shellQuote(JSON.stringify(body))}`,
    node: `${nodeHeader(origin)}\nconst completion = await client.chat.completions.create(${JSON.stringify(body, null, 2)});\nconsole.log(completion.choices[0].message.content);\n`,
    python: `${pythonHeader(origin)}\ncompletion = client.chat.completions.${pythonCall('create', body, PYTHON_CHAT_KWARGS)}\nprint(completion.choices[0].message.content)\n`,
  };
}
