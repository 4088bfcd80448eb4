/**
 * How the end-to-end tests launch Debian's Chromium (Playwright cannot download browsers here).
 * WebGPU in headless Chromium on Linux needs --enable-unsafe-webgpu; it then runs on SwiftShader.
 * The other flags keep a root, offline, headless Chromium quiet: no sandbox (root), no calls home.
 */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const QUIET_FLAGS = [
  '--no-sandbox',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
];

export const WEBGPU_FLAGS = ['--enable-unsafe-webgpu', '--enable-features=Vulkan'];
