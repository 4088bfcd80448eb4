/** The browser's shader map: every `shaders/**\/*.wgsl` bundled as text by Vite. */
import type { ShaderSources } from './kernels';

const files = import.meta.glob('/shaders/**/*.wgsl', { query: '?raw', import: 'default', eager: true }) as Record<string, string>;

export const shaderSources: ShaderSources = Object.fromEntries(
  Object.entries(files).map(([path, text]) => [path.replace(/^\/shaders\//, '').replace(/\.wgsl$/, ''), text]),
);
