// Typings of wxlogin.js, the mini-program client of wxlogin.

/** The subset of the mini-program `wx` API the client calls. */
export interface WxLike {
  login(options: {
    success?: (res: { code: string; errMsg?: string }) => void;
    fail?: (err: { errMsg: string }) => void;
  }): void;
  request(options: {
    url: string;
    method?: string;
    data?: unknown;
    header?: Record<string, string>;
    success?: (res: { data: unknown; statusCode: number; header?: Record<string, string> }) => void;
    fail?: (err: { errMsg: string }) => void;
  }): unknown;
  uploadFile(options: {
    url: string;
    filePath: string;
    name: string;
    header?: Record<string, string>;
    formData?: Record<string, string>;
    success?: (res: { data: string; statusCode: number }) => void;
    fail?: (err: { errMsg: string }) => void;
  }): unknown;
  getStorageSync(key: string): unknown;
  setStorageSync(key: string, value: unknown): void;
  removeStorageSync(key: string): void;
  /** Base library 2.20.1+; the language comes from here when present. */
  getAppBaseInfo?(): { language?: string };
  /** The fallback for the language on older base libraries. */
  getSystemInfoSync?(): { language?: string };
}

export interface ClientOptions {
  /** wxlogin's origin (and path prefix, if any), e.g. `https://api.example.com`. */
  baseUrl: string;
  /** Default: the global `wx`. */
  wx?: WxLike;
  /** Where the session is kept with `wx.setStorageSync`. Default `"wxlogin.session"`. */
  storageKey?: string;
  /**
   * Which endpoints `login()` and `submitEncryptedProfile()` use: `"v1"` (default) JSON
   * `POST /api/v1/login` and `POST /api/v1/me/profile/encrypted`, or `"classic"`
   * form-urlencoded `POST /onLogin` and `POST /updateUserInfo` (token in the body). Every
   * other method uses `/api/v1` in both modes.
   */
  api?: 'v1' | 'classic';
  /**
   * Sent as `X-WX-AppId` to our server only. Needed when WeChat's `Referer` names an app the
   * server does not serve, e.g. DevTools with `touristappid` against a local wxlogin
   * (`MOCK_APP_ID`).
   */
  appId?: string;
  /** The clock, in epoch milliseconds (for tests). Default `Date.now`. */
  now?: () => number;
}

/** A user as wxlogin stores it. */
export interface User {
  id: string;
  openId: string;
  unionId: string | null;
  nickName: string | null;
  avatarUrl: string | null;
  gender: number | null;
  country: string | null;
  province: string | null;
  city: string | null;
  language: string | null;
  phoneNumber: string | null;
  createdAt: string;
  updatedAt: string;
}

/** What is kept in storage (and memory). */
export interface Session {
  /** The bearer token. */
  token: string;
  /** RFC 3339; `null` if the server sent none. */
  expiresAt: string | null;
  /** The user as last answered by the server. */
  user: User | null;
  profileComplete: boolean;
}

/** What `login()` resolves: the new session, and whether the login created the user. */
export interface LoginResult extends Session {
  isNewUser: boolean;
}

/** The answer of the user operations (`GET /api/v1/me` and the profile changes). */
export interface UserReply {
  status: number;
  profileComplete: boolean;
  user: User;
}

/** Plain profile fields (`POST /api/v1/me/profile`, the same as `PATCH`, which `wx.request` lacks); absent fields are kept. */
export interface ProfileFields {
  nickName?: string;
  avatarUrl?: string;
  /** 0 unknown, 1 male, 2 female. */
  gender?: 0 | 1 | 2;
  country?: string;
  province?: string;
  city?: string;
  language?: string;
}

/** What `wx.getUserProfile` (or the legacy `getUserInfo`) gives; extra fields are ignored. */
export interface EncryptedProfile {
  encryptedData: string;
  iv: string;
  /** Sent only together with `signature`. */
  rawData?: string;
  signature?: string;
}

export interface RequestOptions {
  /** A path starting with `/` (resolved against baseUrl) or an absolute http(s) URL. */
  url: string;
  /** Default `GET`. */
  method?: string;
  data?: unknown;
  header?: Record<string, string>;
}

/**
 * Every rejection. Server errors carry the server's `{status, error, message}` (e.g. 400
 * `invalid_code`, 401 `invalid_token`, 422 `decrypt_failed`; non-JSON answers: `http_error`).
 * Local failures have `status` 0: `network_error` (message: wx's errMsg), `login_failed`
 * (wx.login failed), `invalid_request` (a bad argument), `not_prepared` and `prepare_expired`
 * (see `submitEncryptedProfile`), `invalid_response` (a 2xx answer without what it must hold).
 */
export interface WxLoginError extends Error {
  name: 'WxLoginError';
  status: number;
  error: string;
  message: string;
}

export interface Client {
  /**
   * `wx.login`, then the code to the server; stores and resolves the session. Concurrent calls
   * share one login. A failure keeps the previous session.
   */
  login(): Promise<LoginResult>;
  /**
   * The stored session while it is valid (more than 10 s before `expiresAt`, when known), else
   * `login()`. Concurrent calls share one login in flight.
   */
  ensureLogin(): Promise<Session | LoginResult>;
  /**
   * `wx.request` with `Authorization: Bearer` (after `ensureLogin`) and `Accept-Language`.
   * Resolves the body of a 2xx answer, rejects otherwise. On a 401 `token_expired` or
   * `invalid_token`: one new login (shared with concurrent calls; none if another call already
   * got a newer token) and one retry, whose answer is final. The token and `X-WX-AppId` go to
   * URLs under baseUrl only; other URLs get a plain request.
   */
  request<T = any>(options: RequestOptions): Promise<T>;
  /** `GET /api/v1/me`. */
  me(): Promise<UserReply>;
  /** `POST /api/v1/me/profile` (the nickname input, or an uploaded avatar's URL). */
  updateProfile(fields: ProfileFields): Promise<UserReply>;
  /**
   * `wx.uploadFile` of `chooseAvatar`'s temporary file to `POST /api/v1/me/avatar`
   * (multipart, field `file`), with the same single re-login-and-retry on a 401. The stored
   * user gets the new `avatarUrl`.
   */
  uploadAvatar(tempFilePath: string): Promise<UserReply>;
  /**
   * Call on the page's `onShow`, before the user can tap the button that calls
   * `wx.getUserProfile`: ensures a session, then calls `wx.login` and holds its code (a code
   * lives 5 minutes; it is held for 4.5, until `codeExpiresAt`). That `wx.login` may rotate
   * the session key, and data WeChat encrypts from then on uses the key this code hands the
   * server. Concurrent calls share one.
   */
  prepare(): Promise<{ codeExpiresAt: number }>;
  /**
   * Sends `getUserProfile`'s data with the held code (v1: `POST /api/v1/me/profile/encrypted`
   * with the bearer token; classic: `POST /updateUserInfo` form with `token` and `code`): the
   * server exchanges the code and decrypts with its key. Never calls `wx.login`. The held code
   * is used once (cleared whatever the outcome); after a successful submission the server
   * holds the newest key, so later data goes without a code until the next `wx.login`.
   * - Token dead (401) or no valid session: logs in with the held code itself (its key is the
   *   data's), then submits without a code.
   * - The held code is past its 4.5 minutes: rejects `prepare_expired` (call `prepare()` and ask
   *   for the profile again: the data's key is lost with the code).
   * - No held code and this client has called `wx.login` since its own login (or did not log
   *   in itself, e.g. a session from storage): rejects `not_prepared`.
   */
  submitEncryptedProfile(data: EncryptedProfile): Promise<UserReply>;
  /** `POST /api/v1/me/phone {code}` with the `getPhoneNumber` button's `e.detail.code`. */
  bindPhone(code: string): Promise<UserReply>;
  /** `POST /api/v1/session/refresh`: stores and resolves the new token and `expiresAt`. */
  refresh(): Promise<Session>;
  /**
   * `DELETE /api/v1/session`, then clears storage and memory. Clears locally whatever the
   * server answers; resolves on 2xx and on 401 (the token was dead already), rejects on other
   * failures (after clearing). Without a session it only clears.
   */
  logout(): Promise<void>;
  /** The signed-in user, from memory, else storage; `null` when signed out. */
  readonly user: User | null;
  /** The bearer token, from memory, else storage; `null` when signed out. */
  readonly token: string | null;
  /** A copy of the whole stored session, or `null`. */
  readonly session: Session | null;
}

export function createClient(options: ClientOptions): Client;

/** `"wxlogin.session"`. */
export const DEFAULT_STORAGE_KEY: string;
/** `"wx0000000000000000"`: the app id of wxlogin's built-in mock WeChat. */
export const MOCK_APP_ID: string;
