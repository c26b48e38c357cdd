// One page with every flow of the helper: avatar, nickname, phone number, and the classic
// encrypted profile (prepare() on show, submitEncryptedProfile() with getUserProfile's data).
var app = getApp();
var mock = require('../../utils/mock-wechat.js');

Page({
  data: {
    user: null,
    profileComplete: false,
    status: ''
  },

  onShow: function () {
    var page = this;
    // Ahead of the profile button: wx.login now, never between getUserProfile and the submit.
    app.client.prepare().then(
      function () {
        page.show({ user: app.client.user, profileComplete: app.client.session.profileComplete });
      },
      function (err) {
        page.report(err);
      }
    );
  },

  show: function (reply) {
    this.setData({ user: reply.user, profileComplete: reply.profileComplete, status: 'ok' });
  },

  report: function (err) {
    this.setData({ status: (err.error || 'error') + ': ' + err.message });
  },

  // <button open-type="chooseAvatar">: a temporary local file, uploaded to wxlogin.
  onChooseAvatar: function (e) {
    var page = this;
    app.client.uploadAvatar(e.detail.avatarUrl).then(
      function (reply) {
        page.show(reply);
      },
      function (err) {
        page.report(err);
      }
    );
  },

  // <input type="nickname">: plain text (WeChat has checked it).
  onNickname: function (e) {
    var page = this;
    var nickName = (e.detail.value || '').trim();
    if (!nickName) return;
    app.client.updateProfile({ nickName: nickName }).then(
      function (reply) {
        page.show(reply);
      },
      function (err) {
        page.report(err);
      }
    );
  },

  // <button open-type="getPhoneNumber">: a one-time phone code (not a wx.login code).
  onPhone: function (e) {
    var page = this;
    if (!e.detail.code) {
      page.setData({ status: 'phone number not shared: ' + e.detail.errMsg });
      return;
    }
    var code = app.globalData.mockWeChat ? mock.phoneCode(app.globalData.baseUrl) : Promise.resolve(e.detail.code);
    code
      .then(function (c) {
        return app.client.bindPhone(c);
      })
      .then(
        function (reply) {
          page.show(reply);
        },
        function (err) {
          page.report(err);
        }
      );
  },

  // The classic flow. wx.getUserProfile must be called right in the tap handler.
  onClassicProfile: function () {
    var page = this;
    wx.getUserProfile({
      desc: '用于完善资料 / to complete your profile',
      success: function (res) {
        var data = app.globalData.mockWeChat
          ? mock.userProfile(app.globalData.baseUrl, res.userInfo)
          : Promise.resolve(res);
        data
          .then(function (d) {
            return app.client.submitEncryptedProfile(d);
          })
          .then(
            function (reply) {
              page.show(reply);
            },
            function (err) {
              page.report(err);
              // The held code is spent or stale: hold a new one for the next tap.
              app.client.prepare();
            }
          );
      },
      fail: function (err) {
        page.setData({ status: 'profile not shared: ' + err.errMsg });
      }
    });
  },

  onLogout: function () {
    var page = this;
    app.client.logout().then(
      function () {
        page.setData({ user: null, profileComplete: false, status: 'logged out' });
      },
      function (err) {
        page.setData({ user: null, profileComplete: false });
        page.report(err);
      }
    );
  }
});
